"""``tagqa deploy history | rollback``, ``tagqa edge up`` and ``tagqa edge demo-camera``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import uuid

from tagqa_assets.deployment.demo_camera import DemoCamera, demo_frames
from tagqa_assets.deployment.deployer import DeploymentFailed, roll_back
from tagqa_assets.deployment.device_process import (exec_runtime, incoming_folder, register_device, runtime_argv,
                                                     wait_for_first_deployment)
from tagqa_assets.deployment.history import DeploymentHistory, history_rows
from tagqa_assets.deployment.resources import TARGET_KINDS, DeploymentResource
from tagqa_assets.deployment.targets import DeploymentError, TargetNotFound
from tagqa_assets.settings import defect_classes

HISTORY_COLUMNS = ("started_at", "kind", "model_version", "components", "status", "devices", "deployment_id", "error")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tagqa deploy ...`` and ``tagqa edge ...`` to the ``tagqa`` parser."""
    deploy = subparsers.add_parser("deploy", help="edge deployment history and rollback")
    commands = deploy.add_subparsers(dest="deploy_command", required=True)
    history = commands.add_parser("history", help="deployments of a target, newest first")
    history.add_argument("--target", help="target kind (local | greengrass) or id; default TAGQA_DEPLOY_TARGET")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--json", action="store_true", help="print the records as JSON")
    history.set_defaults(handler=_history)
    rollback = commands.add_parser("rollback", help="redeploy the previous good release, reject the current model")
    rollback.add_argument("--target", help="target kind (local | greengrass) or id; default TAGQA_DEPLOY_TARGET")
    rollback.add_argument("--reason", default="", help="why (kept in the registry with the Rejected status)")
    rollback.set_defaults(handler=_rollback)

    edge = subparsers.add_parser("edge", help="run a local edge device")
    edge_commands = edge.add_subparsers(dest="edge_command", required=True)
    up = edge_commands.add_parser("up", help="start a local device: tagqa-edge on the local broker and store, "
                                             "following the deployments to its device folder")
    up.add_argument("--device-id", help="default: the first of TAGQA_DEVICE_ID")
    up.add_argument("--devices-root", help="default: TAGQA_DEVICES_ROOT")
    up.add_argument("--broker", help="MQTT broker HOST:PORT; default TAGQA_MQTT_BROKER")
    up.add_argument("--source", help="camera source (folder, loop:PATH, camera:N); default <device>/incoming")
    up.add_argument("--health-interval", type=float, help="seconds between health messages")
    up.add_argument("--http", default=None, metavar="HOST:PORT",
                    help="the device's HTTP API and operator page; default: the TAGQA_EDGE_HTTP setting "
                         "(127.0.0.1:8081); off or '' for none")
    up.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    up.set_defaults(handler=_edge_up)
    camera = edge_commands.add_parser("demo-camera", help="feed a local device: a loop of synthetic tag frames into "
                                                          "its incoming folder (make run starts it)")
    camera.add_argument("--device-id", help="default: the first of TAGQA_DEVICE_ID")
    camera.add_argument("--devices-root", help="default: TAGQA_DEVICES_ROOT")
    camera.add_argument("--fps", type=float, help="frames per second; default TAGQA_DEMO_CAMERA_FPS")
    camera.add_argument("--frames", type=int, default=48, help="distinct frames in the loop (default 48)")
    camera.add_argument("--max-pending", type=int, default=10,
                        help="pause while this many of its frames wait unread in the folder (default 10)")
    camera.add_argument("--if-enabled", action="store_true",
                        help="do nothing when TAGQA_DEMO_CAMERA is off (what make run passes)")
    camera.set_defaults(handler=_demo_camera)


def _settings(args: argparse.Namespace) -> DeploymentResource:
    """The code location's ``deployment`` resource with ``--target`` applied (a kind or a target id)."""
    deployment: DeploymentResource = args.resources.deployment
    if not args.target:
        return deployment
    kind = args.target.split(":", 1)[0]
    if kind not in TARGET_KINDS:
        raise ValueError(f"unknown target {args.target!r}; use one of {TARGET_KINDS} or a target id such as 'local'")
    return deployment.model_copy(update={"target": kind})


def _history(args: argparse.Namespace) -> int:
    store = args.resources.store.open()
    target = args.target if args.target and ":" in args.target else _settings(args).open_target(store).target_id
    records = DeploymentHistory(store).records(target)
    if args.json:
        print(json.dumps([r.to_dict() for r in reversed(records)][: args.limit], indent=2))
        return 0
    if not records:
        print(f"no deployments on target {target}")
        return 0
    rows = [{c: str(row[c]) for c in HISTORY_COLUMNS} for row in history_rows(records)[: args.limit]]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in HISTORY_COLUMNS}
    print("  ".join(c.ljust(widths[c]) for c in HISTORY_COLUMNS))
    for row in rows:
        print("  ".join(row[c].ljust(widths[c]) for c in HISTORY_COLUMNS))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    store = args.resources.store.open()
    target = _settings(args).open_target(store)
    try:
        report = roll_back(target, store, args.resources.model_registry.open(store), run_id=f"cli-{uuid.uuid4().hex[:8]}",
                           reason=args.reason or "tagqa deploy rollback")
    except (DeploymentFailed, TargetNotFound, DeploymentError) as exc:
        print(f"tagqa deploy rollback: {exc}")
        return 1
    release = report.record.release
    print(f"{target.target_id} runs model version {release.model_version} again ({release.model} + {release.inference})")
    if report.marked:
        print(f"model version {report.marked.version} is now {report.marked.status}: {report.marked.status_reason}")
    return 0


def _edge_http(value: str) -> str:
    """The device's HTTP address: ``off`` (or ``''`` on the command line) serves none."""
    return "" if value.strip().lower() in ("", "off") else value


def _edge_up(args: argparse.Namespace) -> int:
    settings: DeploymentResource = args.resources.deployment
    device = args.device_id or settings.device_ids.split(",")[0].strip()
    broker = args.broker or settings.mqtt_broker
    folder = register_device(args.devices_root or settings.devices_root, device, broker=broker)
    argv = runtime_argv(folder, device, broker=broker, source=args.source or str(incoming_folder(folder.parent, device)),
                        store=args.resources.store.root, s3_endpoint_url=args.resources.store.s3_endpoint_url,
                        health_interval=args.health_interval, log_level=args.log_level,
                        http=_edge_http(args.http if args.http is not None else args.settings.edge_http))
    try:
        wait_for_first_deployment(folder)
    except KeyboardInterrupt:
        return 0
    exec_runtime(argv)
    return 0


def _demo_camera(args: argparse.Namespace) -> int:
    if args.if_enabled and not args.settings.demo_camera:
        print("demo camera off (TAGQA_DEMO_CAMERA=false): drop images into the device's incoming folder yourself")
        return 0
    settings: DeploymentResource = args.resources.deployment
    device = args.device_id or settings.device_ids.split(",")[0].strip()
    folder = incoming_folder(args.devices_root or settings.devices_root, device)
    fps = args.fps if args.fps is not None else args.settings.demo_camera_fps
    camera = DemoCamera(folder, demo_frames(args.frames, defect_classes(args.settings)), fps=fps,
                        max_pending=args.max_pending)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    logging.getLogger("tagqa_assets.deployment.demo_camera").setLevel(logging.INFO)
    camera.run(stop)
    return 0
