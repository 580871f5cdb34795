#!/usr/bin/env python3
"""livegen worker protocol v1 (docs/worker-protocol.md) on top of fastvideo.VideoGenerator.

livegen starts one of these per GPU (CUDA_VISIBLE_DEVICES is set for it), sends JSON
lines on stdin, and reads JSON lines plus length-prefixed binary records on stdout:
  0x01 + u32 length + RGB24 frame   (width*height*3 bytes)
  0x02 + u32 length + f32le audio   (interleaved)
Logs go to stderr only: stdout carries the protocol.

Usage (see README "Running a FastVideo model"):
  python3 livegen_fastvideo_worker.py --model-path MODEL [--option KEY=JSON ...]
      [--model-id ID] [--audio-sample-rate 48000 --audio-channels 2]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import struct
import sys
import threading
import time
import traceback
from typing import Any, Iterable

PROTOCOL = "livegen-worker/1"
VIDEO = 0x01
AUDIO = 0x02

_out = sys.stdout.buffer
_out_lock = threading.Lock()


def log(message: str) -> None:
    print(f"[fastvideo-worker] {message}", file=sys.stderr, flush=True)


def send(message: dict[str, Any]) -> None:
    data = (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")
    with _out_lock:
        _out.write(data)
        _out.flush()


def send_record(kind: int, payload: bytes) -> None:
    if not payload:
        return
    with _out_lock:
        _out.write(struct.pack(">BI", kind, len(payload)))
        _out.write(payload)
        _out.flush()


class Cancelled(Exception):
    pass


class InvalidContinuation(Exception):
    """A continuation state this worker cannot read. It is answered with code
    invalid_continuation, which livegen reports to the client as its own mistake
    rather than as a worker failure worth retrying."""


# --------------------------------------------------------------------- conversions


def _numpy():
    try:
        import numpy  # noqa: PLC0415 - optional: FastVideo always has it, the protocol does not need it

        return numpy
    except ImportError:  # pragma: no cover - only without numpy
        return None


def frame_bytes(frame: Any, width: int, height: int) -> bytes:
    """One frame as RGB24 bytes: numpy/torch (H, W, 3) uint8 or float in [0, 1], or raw bytes."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        data = bytes(frame)
    else:
        if hasattr(frame, "detach"):  # torch tensor
            frame = frame.detach().cpu().numpy()
        np = _numpy()
        if np is None:
            data = frame.tobytes()
        else:
            array = np.asarray(frame)
            if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
                array = array.transpose(1, 2, 0)  # CHW -> HWC
            if array.dtype.kind == "f":
                array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            elif array.dtype != np.uint8:
                array = array.astype(np.uint8)
            data = np.ascontiguousarray(array).tobytes()
    expected = width * height * 3
    if len(data) != expected:
        raise ValueError(f"frame has {len(data)} bytes, expected {expected} ({width}x{height} RGB24)")
    return data


def iter_frames(frames: Any) -> Iterable[Any]:
    """Frames of a result: a (N, H, W, 3) array/tensor or a list of frames."""
    if frames is None:
        return []
    if hasattr(frames, "ndim") and getattr(frames, "ndim") == 4:
        return (frames[i] for i in range(frames.shape[0]))
    return frames


def audio_bytes(audio: Any, channels: int) -> bytes:
    """Audio as interleaved f32le: numpy/torch (samples,), (samples, ch) or (ch, samples), or raw f32 bytes."""
    if audio is None:
        return b""
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return bytes(audio)
    if hasattr(audio, "detach"):
        audio = audio.detach().cpu().numpy()
    np = _numpy()
    if np is None:
        return audio.tobytes()
    array = np.asarray(audio, dtype=np.float32)
    if array.ndim == 2 and array.shape[0] == channels and array.shape[1] != channels:
        array = array.T
    return np.ascontiguousarray(array, dtype="<f4").tobytes()


def state_to_wire(state: Any) -> dict[str, Any] | None:
    if state is None:
        return None
    if isinstance(state, dict):
        kind, payload = state.get("kind"), state.get("payload")
    else:
        kind, payload = getattr(state, "kind", None), getattr(state, "payload", None)
    if not isinstance(kind, str) or not isinstance(payload, dict):
        raise ValueError("continuation state must have a string kind and a dict payload")
    json.dumps(payload)  # must cross the wire as JSON
    return {"kind": kind, "payload": payload}


# --------------------------------------------------------------------- the model


class Bridge:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.schema = None
        try:
            from fastvideo.api import schema  # noqa: PLC0415

            self.schema = schema
        except ImportError:
            log("fastvideo.api.schema not found; passing plain dicts")
        from fastvideo import VideoGenerator  # noqa: PLC0415

        options = dict(args.option)
        if self.schema is not None and hasattr(self.schema, "GeneratorConfig"):
            config = self.schema.GeneratorConfig(model_path=args.model_path, **options)
            self.generator = VideoGenerator.from_pretrained(config=config)
        else:
            self.generator = VideoGenerator.from_pretrained(args.model_path, **options)

    def _build(self, name: str, **fields: Any) -> Any:
        cls = getattr(self.schema, name, None) if self.schema is not None else None
        return cls(**fields) if cls is not None else fields

    def request(self, wire: dict[str, Any], *, for_warmup: bool = False) -> Any:
        sampling = {
            "num_frames": wire["num_frames"],
            "height": wire["height"],
            "width": wire["width"],
            "fps": wire["fps"],
            "num_inference_steps": wire["num_inference_steps"],
            "guidance_scale": wire["guidance_scale"],
            "seed": wire["seed"],
        }
        inputs = {"image_path": wire["init_image_path"]} if wire.get("init_image_path") else {}
        state = wire.get("continuation_state")
        fields: dict[str, Any] = {
            "prompt": wire["prompt"],
            "sampling": self._build("SamplingConfig", **sampling),
            "inputs": self._build("InputConfig", **inputs),
            "output": self._build("OutputConfig", save_video=False, return_frames=not for_warmup, return_state=True),
        }
        if wire.get("negative_prompt"):
            fields["negative_prompt"] = wire["negative_prompt"]
        if state is not None:
            fields["state"] = self.state_from_wire(state)
        return self._build("GenerationRequest", **fields)

    def state_from_wire(self, state: Any) -> Any:
        """The request's continuation state as FastVideo takes it; InvalidContinuation if it cannot be."""
        if not isinstance(state, dict) or not isinstance(state.get("kind"), str) or not isinstance(state.get("payload"), dict):
            raise InvalidContinuation("continuation_state: must be {kind: string, payload: object}")
        declared = self.args.continuation_kind
        if declared is not None and state["kind"] != declared:
            raise InvalidContinuation(f"continuation_state.kind: expected {json.dumps(declared)}, got {json.dumps(state['kind'])}")
        try:
            return self._build("ContinuationState", kind=state["kind"], payload=state["payload"])
        except (TypeError, ValueError) as exc:  # a schema class refusing the fields (pydantic errors are ValueErrors)
            raise InvalidContinuation(f"continuation_state: {type(exc).__name__}: {exc}") from exc

    def run(self, job_id: str | None, wire: dict[str, Any], cancelled: threading.Event) -> dict[str, Any] | None:
        """Runs one request, streaming frames when the generator can; returns the continuation state."""
        width, height = wire["width"], wire["height"]
        channels = self.args.audio_channels
        emit = job_id is not None
        started = time.monotonic()

        def check() -> None:
            if cancelled.is_set():
                raise Cancelled()

        def frames_out(frames: Any) -> int:
            count = 0
            for frame in iter_frames(frames):
                check()
                data = frame_bytes(frame, width, height)
                if emit:
                    send_record(VIDEO, data)
                count += 1
            return count

        request = self.request(wire, for_warmup=not emit)
        if hasattr(self.generator, "generate_async"):
            return asyncio.run(self._run_async(job_id, request, frames_out, check, channels, started))
        result = self.generator.generate(request)
        check()
        if emit:
            send({"type": "progress", "job_id": job_id, "step": wire["num_inference_steps"], "total_steps": wire["num_inference_steps"],
                  "elapsed_ms": round((time.monotonic() - started) * 1000, 1)})
        frames_out(_field(result, "frames"))
        if emit and self.args.audio_sample_rate:
            send_record(AUDIO, audio_bytes(_field(result, "audio"), channels))
        return state_to_wire(_field(result, "state"))

    async def _run_async(self, job_id, request, frames_out, check, channels, started) -> dict[str, Any] | None:
        emit = job_id is not None
        streamed = 0
        last_step = time.monotonic()
        final = None
        async for event in self.generator.generate_async(request):
            check()
            name = type(event).__name__
            if name == "VideoProgressEvent" or hasattr(event, "total_steps"):
                now = time.monotonic()
                if emit:
                    send({"type": "progress", "job_id": job_id, "step": event.step, "total_steps": event.total_steps,
                          "step_ms": round((now - last_step) * 1000, 1), "elapsed_ms": round((now - started) * 1000, 1)})
                last_step = now
            elif name == "VideoPartialEvent":
                streamed += frames_out(event.frames)
            else:
                final = event
        if final is None:
            raise RuntimeError("generate_async ended without a final event")
        if streamed == 0:
            frames_out(getattr(final, "frames", None) or _field(getattr(final, "result", None), "frames"))
        result = getattr(final, "result", None)
        if emit and self.args.audio_sample_rate:
            send_record(AUDIO, audio_bytes(_field(result, "audio"), channels))
        return state_to_wire(getattr(final, "continuation_state", None) or _field(result, "state"))


def _field(result: Any, name: str) -> Any:
    if result is None:
        return None
    if isinstance(result, dict):
        return result.get(name)
    return getattr(result, name, None)


# --------------------------------------------------------------------- the protocol loop


def parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--option wants KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--model-id", default=None)
    parser.add_argument("--option", type=parse_option, action="append", default=[], help="GeneratorConfig field, KEY=JSON")
    parser.add_argument("--audio-sample-rate", type=int, default=0, help="0 = the model makes no audio")
    parser.add_argument("--audio-channels", type=int, default=1)
    parser.add_argument("--continuation-kind", default=None)
    args = parser.parse_args()

    send({"type": "hello", "protocol": PROTOCOL, "pid": os.getpid()})
    try:
        bridge = Bridge(args)
    except Exception as exc:  # noqa: BLE001 - any load failure is reported, then we exit
        log(traceback.format_exc())
        send({"type": "error", "code": "load_failed", "message": f"{type(exc).__name__}: {exc}"})
        return 1
    audio = {"sample_rate": args.audio_sample_rate, "channels": args.audio_channels} if args.audio_sample_rate else None
    send({"type": "ready", "model_id": args.model_id or os.path.basename(args.model_path.rstrip("/")),
          "capabilities": {"audio": audio, "continuation_kind": args.continuation_kind}})

    # stdin is read on a thread so a cancel reaches a running job.
    inbox: "queue.Queue[dict[str, Any] | None]" = queue.Queue()
    cancels: dict[str, threading.Event] = {}

    def reader() -> None:
        for line in sys.stdin:
            if not line.strip():
                continue
            message = json.loads(line)
            if message.get("type") == "job":
                # Registered here, not when the job starts, so an early cancel is not lost.
                cancels.setdefault(message["job_id"], threading.Event())
            if message.get("type") == "cancel":
                event = cancels.get(message.get("job_id"))
                if event is not None:
                    event.set()
                continue
            inbox.put(message)
        inbox.put(None)

    threading.Thread(target=reader, daemon=True).start()

    while True:
        message = inbox.get()
        if message is None or message.get("type") == "shutdown":
            return 0
        kind = message.get("type")
        if kind == "warmup":
            started = time.monotonic()
            try:
                bridge.run(None, message["request"], threading.Event())
                send({"type": "warmup_done", "timings": {"warmup_generate_ms": round((time.monotonic() - started) * 1000)}})
            except Exception as exc:  # noqa: BLE001
                log(traceback.format_exc())
                send({"type": "error", "code": "warmup_failed", "message": f"{type(exc).__name__}: {exc}"})
        elif kind == "job":
            job_id = message["job_id"]
            cancelled = cancels.setdefault(job_id, threading.Event())
            try:
                state = bridge.run(job_id, message["request"], cancelled)
                send({"type": "result", "job_id": job_id, "continuation_state": state})
            except Cancelled:
                send({"type": "error", "job_id": job_id, "code": "cancelled", "message": "cancelled"})
            except InvalidContinuation as exc:
                send({"type": "error", "job_id": job_id, "code": "invalid_continuation", "message": str(exc)})
            except Exception as exc:  # noqa: BLE001
                log(traceback.format_exc())
                send({"type": "error", "job_id": job_id, "code": "failed", "message": f"{type(exc).__name__}: {exc}"})
            finally:
                cancels.pop(job_id, None)


if __name__ == "__main__":
    sys.exit(main())
