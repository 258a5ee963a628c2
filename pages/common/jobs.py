"""The pages' side of ``facecore.jobs``: a panel that polls a background job, and its progress bar.

Long work runs as a ``facecore.jobs.Job`` on a thread of its own, or as a ``facecore.jobs.ProcessJob`` in a
worker process (anything that imports TensorFlow: trainings, comparisons), so a page rerun (any widget
touched) neither waits for it nor stops it; both poll the same way. The panel reruns itself while the job
runs and the whole page once when it ends (so that buttons and counts are current).
"""

from __future__ import annotations

from typing import Callable

import streamlit as st

from facecore.jobs import Job

SEEN_KEY = "_jobs_seen"  # (name, start time) of the ended jobs this session has shown


def watch(get_job: Callable[[], Job | None], show: Callable[[Job | None], None], every: float = 0.5) -> None:
    """Show ``get_job()`` with ``show(job)`` in a fragment that reruns every ``every`` seconds while the
    job runs; once a job has ended, the whole page reruns once (its buttons and counts were drawn while
    the job ran)."""
    job = get_job()

    @st.fragment(run_every=every if job is not None and job.running else None)
    def panel() -> None:
        now = get_job()
        show(now)
        if now is not None and now.finished:
            seen = st.session_state.setdefault(SEEN_KEY, set())
            if (now.name, now.started) not in seen:
                seen.add((now.name, now.started))
                st.rerun()

    panel()


def progress_bar(job: Job, text: str, cancel_key: str, fraction: float | None = None,
                 help: str | None = None) -> None:
    """A running job's progress bar (``fraction``, default ``job.progress.fraction``) and its Cancel
    button; "Cancelling..." once Cancel was pressed."""
    f = job.progress.fraction if fraction is None else fraction
    st.progress(min(max(f, 0.0), 1.0), text="Cancelling..." if job.cancelling else text)
    st.button("Cancel", on_click=job.cancel, disabled=job.cancelling, key=cancel_key, help=help)


def session_job(key: str) -> Job | None:
    """The job this session keeps under ``key`` (None if none was started)."""
    return st.session_state.get(key)


def start_session_job(key: str, job: Job) -> None:
    """Start ``job``, keep it in this session under ``key`` (replacing a finished one) and rerun the page,
    so that its buttons are drawn again knowing a job runs."""
    st.session_state[key] = job.start()
    st.rerun()
