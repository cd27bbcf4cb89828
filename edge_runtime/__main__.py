"""Command line: ``tagqa-edge run ...`` / ``python -m edge_runtime run ...``, ``verify-model DIR``, ``providers``
and ``setup-openvino`` (the Greengrass component's Install step)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from edge_runtime.device_config import DEFAULT_OPENVINO_BUILD, OPENVINO_BUILDS

EXIT_CONFIG = 2
EXIT_MODEL = 3

# Flag -> configuration key (only flags that were given override the configuration).
_FLAG_KEYS = {
    "model": "modelDir", "source": "source", "broker": "broker", "device_id": "deviceId", "store": "uploadPrefix",
    "s3_endpoint_url": "s3EndpointUrl", "state_dir": "stateDir", "ca_file": "brokerCaFile",
    "cert_file": "brokerCertFile", "key_file": "brokerKeyFile", "health_interval": "healthIntervalSeconds",
    "http": "http", "providers": "providers",
}
_PROVIDERS_HELP = ("execution providers to try in order: comma-separated names "
                   "(OpenVINOExecutionProvider,CPUExecutionProvider) or a JSON list of names and "
                   '{"name": ..., "options": {...}} objects; default CPUExecutionProvider')


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tagqa-edge", description="tagqa edge inference runtime")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve a model on a camera source and publish results")
    run.add_argument("--config", type=Path, help="device configuration JSON (re-read when it changes)")
    run.add_argument("--model", help="model directory (model.onnx + model_card.json); watched for changes")
    run.add_argument("--source", help="folder path, folder:PATH, loop:PATH or camera:INDEX|URL")
    run.add_argument("--broker", help="MQTT broker HOST:PORT (not used under Greengrass)")
    run.add_argument("--device-id", help="device name used in topics and store keys")
    run.add_argument("--store", help="upload target for captures: local folder or s3://bucket/prefix")
    run.add_argument("--s3-endpoint-url", help="S3 API endpoint (MinIO, moto, ...); AWS when omitted")
    run.add_argument("--state-dir", help="where the result buffer and capture queue live")
    run.add_argument("--ca-file", help="CA bundle for a TLS broker (e.g. AWS IoT Core)")
    run.add_argument("--cert-file", help="device certificate for mutual TLS")
    run.add_argument("--key-file", help="device private key for mutual TLS")
    run.add_argument("--health-interval", type=float, help="seconds between health messages")
    run.add_argument("--http", metavar="HOST:PORT",
                     help="serve the HTTP API and operator page there (loopback unless httpToken is configured)")
    run.add_argument("--providers", type=_provider_list, help=_PROVIDERS_HELP)
    run.add_argument("--transport", choices=["auto", "mqtt", "greengrass"], default="auto",
                     help="auto: Greengrass IPC when running as a component, else MQTT")
    run.add_argument("--max-frames", type=int, help="stop after this many frames (batch runs, benchmarks)")
    run.add_argument("--seed", type=int, help="seed for the capture sampling (reproducible runs)")
    run.add_argument("--flush-timeout", type=float, default=10.0,
                     help="on stop, seconds to keep delivering buffered results before leaving them on disk")
    verify = commands.add_parser("verify-model", help="verify a model directory as a hot swap would")
    verify.add_argument("model_dir", type=Path)
    verify.add_argument("--providers", type=_provider_list, help=_PROVIDERS_HELP)
    providers = commands.add_parser("providers", help="which execution providers this device can run, or why not "
                                                      "(JSON)")
    providers.add_argument("names", nargs="*", help=f"providers to ask about (default: {', '.join(_ASKED_PROVIDERS)})")
    setup = commands.add_parser("setup-openvino", help="settle which ONNX Runtime build serves OpenVINO here (the "
                                                       "Greengrass component's Install step runs it)")
    setup.add_argument("--build", default=DEFAULT_OPENVINO_BUILD, choices=OPENVINO_BUILDS,
                       help="auto: keep the plugin where it offers a device, else onnxruntime-openvino")
    setup.add_argument("--wheels", type=Path, required=True, help="the component's wheel folder (installed offline)")
    return parser


# What ``tagqa-edge providers`` asks about by default: the providers docs/edge_runtime.md documents.
_ASKED_PROVIDERS = ("CPUExecutionProvider", "OpenVINOExecutionProvider", "CUDAExecutionProvider",
                    "TensorrtExecutionProvider")


def _provider_list(text: str) -> Any:
    """``--providers`` as configuration: a JSON list when it starts with '[', else the comma-separated text."""
    from edge_runtime.device_config import provider_list_text

    try:
        return provider_list_text(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not a JSON list ({exc})") from None


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, flag) for flag, key in _FLAG_KEYS.items() if getattr(args, flag) is not None}


def _run(args: argparse.Namespace) -> int:
    from edge_runtime.config_sources import (FileConfigSource, GreengrassConfigSource, NoConfigSource,
                                             connect_greengrass_ipc, greengrass_available)
    from edge_runtime.device_config import DeviceConfigError
    from edge_runtime.models import ModelRejected
    from edge_runtime.publishers import GreengrassIpcPublisher, MqttPublisher
    from edge_runtime.service import EdgeRuntime

    use_greengrass = args.transport == "greengrass" or (args.transport == "auto" and greengrass_available())
    overrides = _overrides(args)
    if use_greengrass:
        ipc = connect_greengrass_ipc()
        defaults = {"deviceId": os.environ.get("AWS_IOT_THING_NAME", "")}  # the thing name unless configured
        config_source = (FileConfigSource(args.config, defaults) if args.config
                         else GreengrassConfigSource(ipc, defaults))

        def publisher_factory(config):
            return GreengrassIpcPublisher(ipc)
    else:
        config_source = FileConfigSource(args.config) if args.config else NoConfigSource()

        def publisher_factory(config):
            host, _, port = config.broker.rpartition(":")
            return MqttPublisher(host, int(port), f"tagqa-edge-{config.device_id}", ca_file=config.broker_ca_file,
                                 cert_file=config.broker_cert_file, key_file=config.broker_key_file)
    try:
        runtime = EdgeRuntime(config_source=config_source, overrides=overrides, publisher_factory=publisher_factory,
                              max_frames=args.max_frames, seed=args.seed, flush_timeout=args.flush_timeout)
    except DeviceConfigError as exc:
        logging.getLogger("edge_runtime").error("invalid configuration: %s", exc)
        return EXIT_CONFIG
    except ModelRejected as exc:
        logging.getLogger("edge_runtime").error("cannot start without a valid model: %s", exc)
        return EXIT_MODEL
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: runtime.request_stop())
    runtime.run()
    return 0


def _verify(args: argparse.Namespace) -> int:
    from edge_runtime.device_config import DeviceConfigError, parse_providers
    from edge_runtime.models import ModelRejected, load_verified_model

    try:
        providers = parse_providers(args.providers or "CPUExecutionProvider", "--providers")
    except DeviceConfigError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return EXIT_CONFIG
    try:
        model = load_verified_model(args.model_dir, providers=providers)
    except ModelRejected as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return EXIT_MODEL
    print(json.dumps({"ok": True, "model": model.card.to_dict(),
                      "input": [1, 3, model.input_height, model.input_width], "provider": model.provider,
                      "precision": model.precision,
                      "providers_refused": [{"provider": n, "reason": r} for n, r in model.provider_refusals]}))
    return 0


def _providers(args: argparse.Namespace) -> int:
    import onnxruntime as ort

    from edge_runtime.providers import OnnxRuntimeSessions

    asked = tuple(args.names) or _ASKED_PROVIDERS
    sessions = OnnxRuntimeSessions()
    available = sessions.available(asked)
    print(json.dumps({"onnxruntime": ort.__version__, "available": [n for n in asked if n in available],
                      "unavailable": {n: sessions.unavailable_reason(n) for n in asked if n not in available}}))
    return 0


def _setup_openvino(args: argparse.Namespace) -> int:
    from edge_runtime.openvino_setup import OpenVinoSetupError, setup_openvino

    try:
        print(setup_openvino(args.build, args.wheels))
    except OpenVinoSetupError as exc:
        print(f"setup-openvino: {exc}", file=sys.stderr)
        return 1
    return 0


_COMMANDS = {"run": _run, "verify-model": _verify, "providers": _providers, "setup-openvino": _setup_openvino}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return _COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
