"""What a job's image and flavor mean on this hub.

Runtimes: the operator chooses one per hub with ``hubfs serve --jobs --jobs-runtime local|docker|podman``;
the default is ``local``, nothing is detected or chosen per job, and ``docker``/``podman`` are refused at
start-up when the command is not on ``PATH``. A job's ``dockerImage`` never picks the runtime.

- ``local`` (the default): the job runs as a process of the hub's user, in its own process group
  and working directory (``--jobs-dir``/<id>/work), with a clean environment (the server's own
  environment, tokens included, never leaks in). The image is not pulled: the command runs on the
  host, and for Python images (``python:*``, ``*/python*``, the ``uv`` images, ``pytorch/*``) ``python``
  and ``python3`` are the hub's own interpreter (its virtual environment first on ``PATH``).
  ``uv run`` commands run with ``uv`` when it is installed, else with the hub's Python after checking
  that the script's inline (PEP 723) dependencies are importable (:mod:`hubfs.server.jobs.uvshim`).
- ``docker`` / ``podman``: the command runs in ``IMAGE`` with ``<runtime> run --rm``, the job's working
  directory mounted at ``/work`` and its bucket volumes at their mount paths; the hub must be reachable
  from the container (``--public-url``) and the image pullable. Only the argv this builds is tested here
  (no container runtime or image registry on the test machines); the local runtime is what runs jobs.

Bucket volumes (how ``hf jobs uv run script.py`` ships a local script) are copied into the job's folder
when it starts: :mod:`hubfs.server.jobs.volumes`.

Flavors are the Hub's names. CPU flavors limit the job's address space to the flavor's RAM
(``RLIMIT_AS``) and, with a timeout, its CPU time to timeout x vCPUs (``RLIMIT_CPU``); GPU flavors are
offered only when the machine has an NVIDIA GPU, and set no address-space limit (CUDA maps more
virtual memory than it uses).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubfs.errors import BadRequestError


@dataclass(frozen=True)
class Flavor:
    name: str
    pretty: str
    cpus: int
    ram_gb: int
    gpu: str | None = None
    gpus: int = 0
    vram_gb: int = 0

    def wire(self) -> dict[str, Any]:
        """The Hub's ``/api/jobs/hardware`` item (free of charge on this hub)."""
        accelerator = None
        if self.gpu:
            accelerator = {"type": "gpu", "model": self.gpu, "quantity": str(self.gpus),
                           "vram": f"{self.vram_gb} GB", "manufacturer": "Nvidia"}
        return {"name": self.name, "prettyName": self.pretty, "cpu": f"{self.cpus} vCPU", "ram": f"{self.ram_gb} GB",
                "ephemeralStorage": "local disk", "accelerator": accelerator, "unitCostMicroUSD": 0,
                "unitCostUSD": 0.0, "unitLabel": "minute"}


FLAVORS = {f.name: f for f in (
    Flavor("cpu-basic", "CPU Basic", 2, 16),
    Flavor("cpu-upgrade", "CPU Upgrade", 8, 32),
    Flavor("cpu-performance", "CPU Performance", 32, 256),
    Flavor("cpu-xl", "CPU XL", 16, 124),
    Flavor("t4-small", "Nvidia T4 - small", 4, 15, "T4", 1, 16),
    Flavor("a10g-small", "Nvidia A10G - small", 4, 15, "A10G", 1, 24),
    Flavor("a100-large", "Nvidia A100 - large", 12, 142, "A100", 1, 80),
    Flavor("h200", "Nvidia H200", 23, 256, "H200", 1, 141),
)}
RUNTIMES = ("local", "docker", "podman")
_PYTHON_IMAGE = re.compile(r"^(?:[\w.\-]+/)*(?:python|uv|pytorch|huggingface)[\w.\-]*(?::[\w.\-]+)?$")


def has_gpu() -> bool:
    return Path("/dev/nvidia0").exists()


def offered_flavors() -> list[Flavor]:
    """The flavors this machine can run (GPU ones only with a GPU)."""
    gpu = has_gpu()
    return [f for f in FLAVORS.values() if gpu or not f.gpu]


def flavor_of(name: str | None) -> Flavor:
    """The flavor named ``name`` (``cpu-basic`` by default); 400 for an unknown one or a GPU without a GPU."""
    flavor = FLAVORS.get(name or "cpu-basic")
    if flavor is None:
        raise BadRequestError(f"Unknown flavor {name!r}; this hub offers: {', '.join(f.name for f in offered_flavors())}.")
    if flavor.gpu and not has_gpu():
        raise BadRequestError(f"Flavor {flavor.name} needs a GPU and this hub has none; use a cpu-* flavor.")
    return flavor


def limits(flavor: Flavor, timeout: float) -> dict[str, int]:
    """``prlimit`` names and values for a local job: address space (CPU flavors), CPU seconds."""
    out = {} if flavor.gpu else {"as": flavor.ram_gb << 30}
    out["cpu"] = int(timeout * flavor.cpus) + 1
    return out


def is_python_image(image: str) -> bool:
    return bool(_PYTHON_IMAGE.match(image.split("@", 1)[0]))


def local_path_env() -> str:
    """``PATH`` for a local job: the hub's interpreter's folder first, then the system's."""
    base = os.defpath if not os.environ.get("PATH") else os.environ["PATH"]
    return os.pathsep.join([str(Path(sys.executable).parent), base])


def local_command(image: str, command: list[str]) -> list[str]:
    """The argv a local job runs for ``command`` in ``image``.

    In a Python image ``python``/``python3`` become the hub's interpreter; ``uv run ...`` runs with
    ``uv`` when installed, else through :mod:`hubfs.server.jobs.uvshim` on the hub's interpreter.
    """
    if not command:
        raise BadRequestError("A job needs a command.")
    if command[0] == "uv" and command[1:2] == ["run"] and shutil.which("uv") is None:
        return [sys.executable, "-m", "hubfs.server.jobs.uvshim", *command[2:]]
    if is_python_image(image) and command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]]
    return list(command)


def container_command(runtime: str, name: str, image: str, command: list[str], env_names: list[str],
                      workdir: Path, flavor: Flavor, mounts: list[tuple[Path, str]] | None = None) -> list[str]:
    """``<runtime> run`` for a container job; the environment passes by name (values stay out of argv);
    ``mounts``: (host folder, container path) of the job's volumes."""
    argv = [runtime, "run", "--rm", "--init", "--name", name, "-v", f"{workdir}:/work", "-w", "/work",
            "--cpus", str(flavor.cpus), "--memory", f"{flavor.ram_gb}g"]
    for folder, path in mounts or []:
        argv += ["-v", f"{folder}:{path}"]
    if flavor.gpu:
        argv += ["--gpus", "all"] if runtime == "docker" else ["--device", "nvidia.com/gpu=all"]
    for key in env_names:
        argv += ["-e", key]
    return [*argv, image, *command]
