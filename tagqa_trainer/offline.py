"""Keeping Ultralytics offline and out of the user's home, inside the training process.

Ultralytics reads ``YOLO_CONFIG_DIR`` once, when it is imported, and then: writes its
settings file there, turns on every experiment-tracking integration it can import (MLflow
when ``mlflow`` is installed, as the sagemaker SDK does), and downloads ``Arial.ttf`` when
it checks a dataset. ``prepare_environment`` runs before the import, ``configure_settings``
right after it; ``NetworkGuard`` counts (and refuses) any connection attempt that still
happens, so tests can prove training never reached for the network.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

from tagqa_trainer.params import INTEGRATIONS

_FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}


def prepare_environment(settings_dir: Path, *, offline: bool = True) -> Path:
    """Point Ultralytics at ``settings_dir`` (created) before it is imported; returns its settings folder.

    Raises ``RuntimeError`` when Ultralytics was already imported in this process with
    another settings directory, because it would ignore the new one.
    """
    settings_dir = Path(settings_dir).resolve()
    settings_dir.mkdir(parents=True, exist_ok=True)
    if "ultralytics" in sys.modules and os.environ.get("YOLO_CONFIG_DIR") != str(settings_dir):
        raise RuntimeError(
            f"ultralytics was imported before its settings dir was set to {settings_dir}; "
            "run training through tagqa_trainer.entrypoint"
        )
    os.environ["YOLO_CONFIG_DIR"] = str(settings_dir)
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("MPLCONFIGDIR", str(settings_dir / "matplotlib"))
    if offline:
        os.environ["YOLO_OFFLINE"] = "1"
    ultralytics_dir = settings_dir / "Ultralytics"
    ultralytics_dir.mkdir(parents=True, exist_ok=True)
    _place_fonts(ultralytics_dir)
    return ultralytics_dir


def _place_fonts(folder: Path) -> None:
    # Ultralytics' check_font returns a font found in its settings folder before trying to
    # download Arial; matplotlib's bundled DejaVu Sans (free licence) stands in for it.
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in _FONT_NAMES:
        target = folder / name
        if not target.exists() and source.is_file():
            shutil.copyfile(source, target)


def configure_settings(*, runs_dir: Path, integrations: tuple[str, ...] = ()) -> dict[str, Any]:
    """Update Ultralytics' settings: every integration off unless named, no telemetry, runs under ``runs_dir``."""
    from ultralytics import settings

    values: dict[str, Any] = {name: name in integrations for name in INTEGRATIONS}
    values.update(sync=False, runs_dir=str(runs_dir), weights_dir=str(runs_dir / "weights"), datasets_dir=str(runs_dir / "datasets"))
    settings.update(values)
    return values


class NetworkGuard:
    """An audit hook refusing non-local DNS lookups and connections; ``attempts`` lists what was refused.

    Audit hooks cannot be removed, so ``enabled`` switches the guard off instead.
    """

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self.enabled = False
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if not self.enabled:
            return
        target = None
        if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
            host = args[0]
            target = None if _is_local(host) else f"lookup {host}"
        elif event == "socket.connect":
            sock, address = args
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
                target = f"connect {address}"
        if target:
            self.attempts.append(target)
            raise PermissionError(f"tagqa offline training: network access refused ({target})")


def _is_local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    return host is None or str(host) in _LOCAL_HOSTS or str(host).startswith("127.")

