"""Live video: the webcam frame processor (``processor``), pacing (``pacing``), WebRTC settings
(``rtc``), the reconnect policy (``reconnect``) and the in-browser detector (``browser``)."""
