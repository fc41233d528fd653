"""The inference service behind the routes: access (through :class:`~hubfs.server.hub.Hub`, exactly as a
download asks), the repo's current commit, the task, the loaded model and the batched run.

Every method here blocks (git, SQLite, model loads, model runs): the routes call them off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hubfs.errors import BadRequestError
from hubfs.server.hub import Caller, Hub
from hubfs.server.inference import tasks
from hubfs.server.inference.models import InferenceOptions, LoadedModel, ModelCache
from hubfs.server.metadata import Repo


@dataclass
class Prepared:
    """A request ready to run: the repo, the task, the loaded model and the parsed input."""

    repo: Repo
    task: str
    model: LoadedModel
    inputs: Any = None
    params: dict[str, Any] | None = None


class InferenceService:
    """One hub's inference: its :class:`ModelCache` and options."""

    def __init__(self, hub: Hub, options: InferenceOptions) -> None:
        self.hub, self.options = hub, options
        self.models = ModelCache(hub, options)
        self.limiter: Any = None  # an anyio.CapacityLimiter, made by the routes on the event loop

    def readable_model(self, caller: Caller, repo_id: str) -> Repo:
        """The model repo if the caller may download its files (private: invisible; gated: granted)."""
        repo = self.hub.visible_repo(caller, "model", repo_id)
        self.hub.check_gate(caller, repo)
        return repo

    def prepare(self, caller: Caller, repo_id: str, named_task: str | None, body: Any, raw: bytes | None,
                *, parse: bool = True) -> Prepared:
        """Check access, resolve ``main`` now, choose the task, load (or find) the model, parse the input."""
        repo = self.readable_model(caller, repo_id)
        sha, entries, config = self.models.current(repo)
        task = tasks.choose_task(named_task, repo.pipeline_tag, config, body, repo.public_id)
        inputs, params = tasks.parse(task, body, raw) if parse else (None, None)
        model = self.models.get(repo, sha, entries, tasks.pipeline_task(task))
        return Prepared(repo, task, model, inputs, params)

    def run(self, prepared: Prepared) -> Any:
        """The shaped output of a prepared task request (batched with concurrent ones)."""
        return prepared.model.batcher.submit(prepared.task, prepared.inputs, prepared.params or {})

    def chat_model(self, caller: Caller, repo_id: str) -> Prepared:
        """A text-generation model for chat; 400 when the repo's task is another one."""
        prepared = self.prepare(caller, repo_id, None, None, None, parse=False)
        if prepared.task != "text-generation":
            raise BadRequestError(f"Model {prepared.repo.public_id} runs {prepared.task}, not chat (text-generation).")
        return prepared

    def list_models(self, caller: Caller) -> list[dict[str, Any]]:
        """The models this caller may run, as ``/v1/models`` entries (OpenAI's list shape)."""
        out = []
        for repo in self.hub.meta.search_repos("model", author=None, search=None, filters=[], sort=None):
            tag = tasks.ALIASES.get(repo.pipeline_tag or "", repo.pipeline_tag or "")
            if tag not in tasks.TASKS:
                continue
            if repo.private and not (caller.user and self.hub.meta.is_member(caller.user, repo.namespace)):
                continue
            out.append({"id": repo.public_id, "object": "model", "created": int(repo.created_at),
                        "owned_by": repo.namespace or "hubfs", "task": tag})
        return out

    def stats(self) -> dict[str, Any]:
        """Loads per model key, evictions and what is loaded now (for the hub's admin)."""
        loaded = self.models.loaded()
        return {"device": self.models.device, "loads": dict(self.models.stats.loads),
                "loadSeconds": dict(self.models.stats.load_seconds), "evictions": self.models.stats.evictions,
                "loaded": [{"model": str(m.key), "bytes": m.size, "batches": list(m.batcher.batches)}
                           for m in loaded],
                "maxModels": self.options.max_models, "maxMemory": self.options.max_memory,
                "maxBatch": self.options.max_batch}
