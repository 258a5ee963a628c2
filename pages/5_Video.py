"""Video: run a detector over an uploaded video; play, chart and download the annotated result.

All the work is ``facecore.video.process_video``, run as a background job of this session (touching
a widget meanwhile does not stop it; Cancel does, and facecore then deletes the partial output); this
page keeps the upload and the result in a per-session temporary folder.
"""

import shutil
import tempfile
from pathlib import Path

import streamlit as st

from facecore import FaceCoreError
from facecore.jobs import Job
from facecore.scan import VIDEO, ScanningDetector
from facecore.video import (VIDEO_EXTS, VideoConfig, format_time, max_upload_mb, new_scratch_dir, probe, process_video,
                            store_upload)
from pages.common import dataset_picker, detector_picker, show_error
from pages.common.figures import timeline_figure
from pages.common.jobs import progress_bar, session_job, start_session_job, watch

DIR_KEY, UPLOAD_KEY, RESULT_KEY, JOB_KEY = "video_dir", "video_upload", "video_result", "video_job"
SAMPLE_EVERY_S = 0.3  # the interval offered when sampling is chosen (VideoConfig's default runs every frame)

st.title("🎞️ Video")
st.write("Upload a video, pick a detector, and get it back with every face boxed (or blurred), a chart of the "
         "face probability over time, and the detections as CSV or JSON.")
dataset_picker()


SCRATCH = Path(tempfile.gettempdir()) / "facetrack-video"
SCRATCH_MAX_AGE_S = 24 * 3600


def session_dir() -> Path:
    """This session's scratch folder for the uploaded video and the result. Folders of sessions
    idle for a day are removed when a new one is made (sessions end without telling the page)."""
    d = st.session_state.get(DIR_KEY)
    if d is None or not Path(d).is_dir():
        d = str(new_scratch_dir(SCRATCH, SCRATCH_MAX_AGE_S))
        st.session_state[DIR_KEY] = d
    return Path(d)


def forget_upload() -> None:
    """A new upload (or none): stop processing the previous video, drop it and its result."""
    job = st.session_state.pop(JOB_KEY, None)
    if job is not None and job.cancel():
        job.wait(30)  # it stops at its next chunk; then its folder can go
    st.session_state.pop(UPLOAD_KEY, None)
    st.session_state.pop(RESULT_KEY, None)
    d = st.session_state.get(DIR_KEY)
    if d:
        shutil.rmtree(d, ignore_errors=True)
        st.session_state.pop(DIR_KEY, None)


limit = max_upload_mb()
uploaded = st.file_uploader(f"Video ({', '.join(e[1:] for e in VIDEO_EXTS)}; up to {limit} MB)",
                            type=[e[1:] for e in VIDEO_EXTS], max_upload_size=limit, on_change=forget_upload,
                            key="video_file")
if uploaded is None:
    st.info("Upload a video to start. Short clips are quickest: a minute of 640x480 at 30 fps took about a "
            "minute with Haar on every frame on a 2-core machine; the default BlazeFace detectors take a few ms a "
            "frame, and *every few seconds* is faster still.")
    st.stop()

upload = st.session_state.get(UPLOAD_KEY)
if upload is None or upload["id"] != uploaded.file_id:
    try:
        path = store_upload(uploaded.getbuffer(), uploaded.name, session_dir() / "input", limit)
        info = probe(path)
    except FaceCoreError as exc:
        show_error(exc)
        st.stop()
    upload = {"id": uploaded.file_id, "name": uploaded.name, "path": path, "info": info}
    st.session_state[UPLOAD_KEY] = upload
info = upload["info"]

cols = st.columns(5)
cols[0].metric("Duration", format_time(info.duration) if info.duration else "unknown")
cols[1].metric("Frame rate (fps)", f"{info.fps:.4g}")
cols[2].metric("Resolution", f"{info.width}x{info.height}")
cols[3].metric("Frames", f"~{info.frames}")
cols[4].metric("Audio", info.audio or "none")
st.caption(f"Video codec {info.codec}" + (f", rotated {info.rotation}° for display" if info.rotation else ""))

st.subheader("Settings")
DEFAULTS = VideoConfig()  # every widget starts at facecore's default (tests/test_page_video.py checks)
left, right = st.columns(2)
with left:
    det_name, det = detector_picker(key="video_detector")
    threshold = st.slider("Threshold", 0.0, 1.0, DEFAULTS.threshold, 0.05, key="video_threshold",
                          help="Faces whose probability reaches it are boxed (or blurred).")
    blur = st.toggle("Blur faces instead of boxing them (anonymize)", DEFAULTS.blur, key="video_blur")
    if st.toggle("Find small faces in large frames (tiles for frames over 1280 px)", value=True,
                 key="video_small_faces", help="A 640 x 480 clip runs at full speed either way; photo-sized "
                                               "frames are also scanned in tiles (facecore.scan).") and det:
        det = ScanningDetector(det, VIDEO)
with right:
    mode = st.radio("Run the detector", ["on every frame", "every few seconds (faster)"], key="video_mode",
                    index=0 if DEFAULTS.every <= 0 else 1,
                    help="Sampling holds the last boxes until the next sample, as the FaceVision tutorial does.")
    every = DEFAULTS.every
    if mode != "on every frame":
        every = st.number_input("Interval (seconds)", 0.05, 10.0, DEFAULTS.every or SAMPLE_EVERY_S, 0.05,
                                key="video_every")
    smooth = st.slider("Box smoothing", 0.0, 0.9, DEFAULTS.smooth, 0.1, key="video_smooth",
                       help="Weight of the previous box when a face is seen again: steadier boxes, a little lag.")
with st.expander("Advanced"):
    batch = st.number_input("Frames per inference batch", 1, 64, DEFAULTS.batch_size, key="video_batch")
    crf = st.slider("Video quality (x264 CRF, lower is better and bigger)", 16, 32, DEFAULTS.crf, key="video_crf")
    allow_truncated = st.checkbox("Process the readable part of a truncated file", DEFAULTS.allow_truncated,
                                  key="video_truncated")

config = None
try:
    config = VideoConfig(threshold=threshold, every=float(every), smooth=smooth, blur=blur, batch_size=int(batch),
                         crf=int(crf), allow_truncated=allow_truncated)
except FaceCoreError as exc:
    show_error(exc)

job = session_job(JOB_KEY)
running = job is not None and job.running
start = st.button("Process video", type="primary", disabled=det is None or config is None or running,
                  key="video_start")
if start:
    st.session_state.pop(RESULT_KEY, None)
    src, out_path = upload["path"], session_dir() / "output" / f"{Path(upload['name']).stem}_faces.mp4"
    start_session_job(JOB_KEY, Job(lambda progress, cancel: process_video(src, out_path, det, config, progress,
                                                                          cancel, info=info), "video"))
if job is not None and job.status == "done":  # the result moves into the session; the job is done with
    st.session_state[RESULT_KEY] = job.result
    st.session_state.pop(JOB_KEY)


def show_job(job: Job | None) -> None:
    if job is None:
        return
    if job.running:
        progress_bar(job, job.progress.message or "Starting...", "video_cancel",
                     help="Stop processing; nothing is written.")
    elif job.status == "cancelled":
        st.warning("Processing stopped before the end: no video was written. Press *Process video* to start again.")
    elif job.status == "failed":
        show_error(job.error)


watch(lambda: session_job(JOB_KEY), show_job)

result = st.session_state.get(RESULT_KEY)
if result is None:
    st.stop()

st.subheader("Result")
for w in result.warnings:
    st.warning(w)
faces = result.face_frames
cols = st.columns(5)
cols[0].metric("Frames", result.frames)
cols[1].metric("Processing speed", f"{result.fps:.1f} fps")
cols[2].metric("Frames with a face", f"{faces} ({faces / max(result.frames, 1):.0%})")
cols[3].metric("Most faces in a frame", result.most_faces)
cols[4].metric("Audio", "kept" if result.audio_kept else "none")
cfg = result.config
st.caption(f"Detector `{result.detector}`, threshold {cfg.threshold:.2f}, "
           + ("every frame" if cfg.every <= 0 else f"every {cfg.every:g} s") + (", blurred" if cfg.blur else ""))
st.video(str(result.output))

stem = Path(upload["name"]).stem
d1, d2, d3 = st.columns(3)
d1.download_button("Download video (MP4)", data=result.output.read_bytes, file_name=f"{stem}_faces.mp4",
                   mime="video/mp4", key="video_dl_mp4")
d2.download_button("Detections (CSV)", data=result.to_csv, file_name=f"{stem}_detections.csv", mime="text/csv",
                   key="video_dl_csv")
d3.download_button("Detections (JSON)", data=result.to_json, file_name=f"{stem}_detections.json",
                   mime="application/json", key="video_dl_json")

st.subheader("Face probability over time")
st.plotly_chart(timeline_figure(result), key="video_timeline")

if result.gallery:
    st.subheader("Sampled frames")
    per_row = 4
    for i in range(0, len(result.gallery), per_row):
        row = st.columns(per_row)
        for col, (t, img) in zip(row, result.gallery[i:i + per_row]):
            col.image(img, caption=f"{format_time(t)}", width="stretch")
