"""Training jobs and the served model: train on the store's takes, follow a job epoch by
epoch, cancel it, and swap back to the previous model.

Starting, cancelling and rolling back are writes (`--allow-writes`, and the API key when
the server has one). One job runs at a time; when it is done its model is served at once.
"""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, HTTPException
from fastapi.responses import JSONResponse

from ..errors import error_responses
from ..jobs import TrainJobs
from ..schemas import ModelState, TrainJob, TrainJobList, TrainRequest, TrainStarted
from ..security import require_writes
from ..state import ServingState, get_state
from ..train_options import check_trainable, job_config, job_options

router = APIRouter(tags=["train"])
writes = [Depends(require_writes)]


def jobs_of(state: ServingState) -> TrainJobs:
    if state.jobs is None:
        url = state.store.url
        if url.startswith("memory://"):
            raise HTTPException(
                422,
                "a training job runs in a process of its own, which cannot see a memory:// "
                "store: serve a store in a folder or on object storage",
            )
        raise HTTPException(422, f"store {url} is not a local folder: give --runs DIR for jobs")
    return state.jobs


def served_job(state: ServingState) -> str | None:
    return None if state.models.current is None else state.models.current.job_id


@router.post(
    "/v1/train",
    status_code=202,
    response_model=TrainStarted,
    summary="Train on the store's takes",
    description="Starts a training job on the store as it is now and answers at once; "
    "follow it with GET /v1/train/{job_id}. When it is done its model is served. `{}` "
    "trains with the defaults for a small set. 409 (with the running job's `job_id`) "
    "while another job trains; 422 when the store cannot be trained on yet, saying what "
    "to add.",
    dependencies=writes,
    responses=error_responses(401, 403, 409, 422, 503),
)
async def start_training(
    body: TrainRequest = Body(default_factory=TrainRequest),
    state: ServingState = Depends(get_state),
):
    jobs = jobs_of(state)
    if jobs.running_id is not None:
        return running(jobs.running_id)
    await state.refresh()
    options = job_options(body, state.store)
    check_trainable(state.store, options)
    try:
        config = job_config(options, state.store, state.settings)
        threads, storage = state.settings.torch_threads or 1, state.store.storage_options
        job_id = await jobs.start(options, config, threads, storage)
    except HTTPException as exc:
        if exc.status_code == 409 and jobs.running_id is not None:
            return running(jobs.running_id)
        raise
    return {"job_id": job_id, "state": "queued", "options": options}


def running(job_id: str) -> JSONResponse:
    detail = f"a training job is running: {job_id}; wait for it or cancel it first"
    return JSONResponse({"detail": detail, "job_id": job_id}, status_code=409)


@router.get(
    "/v1/train",
    response_model=TrainJobList,
    summary="Training jobs",
    dependencies=writes,
    responses=error_responses(401, 403, 422, 503),
)
def list_jobs(state: ServingState = Depends(get_state)) -> dict:
    jobs = jobs_of(state)
    return {"jobs": jobs.list(served_job(state)), "running": jobs.running_id}


@router.get(
    "/v1/train/{job_id}",
    response_model=TrainJob,
    summary="One training job",
    description="Its state, the metrics of every finished epoch (train and val loss and "
    "top-1), its error, and once done the model's report on the val takes.",
    dependencies=writes,
    responses=error_responses(401, 403, 404, 422, 503),
)
def get_job(job_id: str, state: ServingState = Depends(get_state)) -> dict:
    return jobs_of(state).describe(job_id, served_job(state))


@router.delete(
    "/v1/train/{job_id}",
    response_model=TrainJob,
    summary="Cancel a training job",
    description="Stops a queued or running job; the served model stays as it was.",
    dependencies=writes,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def cancel_job(job_id: str, state: ServingState = Depends(get_state)) -> dict:
    jobs = jobs_of(state)
    jobs.folder(job_id)  # 404 for a job that never was
    await jobs.cancel(job_id)
    return jobs.describe(job_id, served_job(state))


def model_state(state: ServingState) -> dict:
    current, previous = state.models.current, state.models.previous
    return {
        "model": None if current is None else current.summary(),
        "previous": None if previous is None else previous.summary(),
    }


@router.get(
    "/v1/model",
    response_model=ModelState,
    summary="The served model and the previous one",
    responses=error_responses(401, 503),
)
def get_model(state: ServingState = Depends(get_state)) -> dict:
    return model_state(state)


@router.post(
    "/v1/model/rollback",
    response_model=ModelState,
    summary="Serve the previous model again",
    description="Swaps the served model and the previous one (a second rollback undoes the "
    "first); a restart serves the model rolled back to. 409 when there is no previous one.",
    dependencies=writes,
    responses=error_responses(401, 403, 409, 503),
)
def rollback(state: ServingState = Depends(get_state)) -> dict:
    state.models.rollback()
    return model_state(state)
