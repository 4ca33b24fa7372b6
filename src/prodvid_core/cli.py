"""`prodvid`: the whole product from a shell, no Dagster needed.

    prodvid generate SKU --image PATH --prompt TEXT [--format story|WxH] [--anchor A] [--seconds S]
                     [--store DIR|s3://bucket/prefix] [--preset tiny] ...
    prodvid inbox [--store DIR|s3://bucket/prefix] [--batch-size N] [--sku SKU ...] [--format F] ...
    prodvid frames SKU --out DIR [--store DIR|s3://bucket/prefix]
    prodvid serve [--store DIR|s3://bucket/prefix] [--host 127.0.0.1] [--port 3001]
    prodvid models tiny DIR
    prodvid sample PATH

Settings come from flags, then `PRODVID_*` env vars, then defaults. For `generate`, the flags that a brief
also has (`--prompt`, `--format`, `--seconds`, ...) set the brief's fields, so they win over `--brief`; for
`inbox`, `--format`, `--anchor`, `--fill` and `--margin` are the defaults of the SKUs whose briefs leave them
out. A user mistake exits with status 2 and one line naming the problem; only a bug prints a traceback.

The whole request (SKU, brief, camera path, photo, settings, models, device, store) is checked
(`request`) before torch, diffusers or transformers are imported, so a mistake is answered in a fraction
of a second and nothing is written. What is allowed but likely a mistake is a `prodvid: warning:` line.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections import defaultdict
from pathlib import Path

from prodvid_core import __version__, camera, formats, layout, leases, models, request
from prodvid_core.brief import MAX_BRIEF_BYTES, decode_brief, parse_brief
from prodvid_core.errors import ProdvidError, validate_sku
from prodvid_core.settings import SPEED_PRESETS, Settings, framing

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: the mistake and where to look, not the whole usage."""

    def error(self, message: str):
        self.exit(2, f"prodvid: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="prodvid", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"prodvid {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="make the hero image and video of one SKU")
    gen.add_argument("sku", help="SKU id: letters, digits, '.', '_', '-' (1-64 chars)")
    gen.add_argument("--image", required=True, type=Path, help="the product photo (PNG, JPEG or WebP)")
    gen.add_argument("--prompt", help="the scene; or give --brief")
    gen.add_argument("--brief", type=Path, help="a brief JSON file (fields as inbox/<SKU>.json)")
    gen.add_argument("--negative-prompt")
    gen.add_argument("--seed", type=int)
    gen.add_argument(
        "--camera", help=f"a path name ({', '.join(camera.PATHS)}) or a JSON object like in a brief"
    )
    gen.add_argument("--num-frames", type=int, help="frames in the video, counting the hero image")
    gen.add_argument("--seconds", type=float, help="length of the video: round(seconds * fps) + 1 frames")
    gen.add_argument("--fps", type=int)
    _add_settings(gen)

    box = sub.add_parser("inbox", help="make every SKU whose photo and brief are in the store's inbox")
    box.add_argument("--sku", action="append", help="only this SKU (repeat for more)")
    box.add_argument(
        "--batch-size", type=int, help="SKUs that share one diffusion call (default $PRODVID_BATCH_SIZE or 1)"
    )
    box.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="processes that make SKUs side by side, each on its own leased GPU (default 1; see "
        "PRODVID_GPU_COUNT)",
    )
    _add_settings(box)

    frm = sub.add_parser("frames", help="write a SKU's frames to a folder as PNGs, rendered from the store")
    frm.add_argument("sku", help="SKU id")
    frm.add_argument("--out", required=True, type=Path, help="the folder to write 00000.png … to")
    frm.add_argument(
        "--store", help="a folder or s3://bucket/prefix (default $PRODVID_STORE or ./prodvid-data)"
    )
    frm.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default $PRODVID_S3_ENDPOINT_URL)")

    srv = sub.add_parser(
        "serve", help="serve the store's outputs (images, videos) and a review page to a browser, read-only"
    )
    srv.add_argument(
        "--store", help="a folder or s3://bucket/prefix (default $PRODVID_STORE or ./prodvid-data)"
    )
    srv.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default $PRODVID_S3_ENDPOINT_URL)")
    srv.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    srv.add_argument("--port", type=int, default=3001, help="port to listen on (default 3001; 0: a free one)")

    mod = sub.add_parser("models", help="model utilities")
    mod_sub = mod.add_subparsers(dest="models_command", required=True)
    for preset in models.PRESETS:
        write = mod_sub.add_parser(preset, help=f"write the offline {preset} preset as a diffusers folder")
        write.add_argument("directory", type=Path)

    smp = sub.add_parser("sample", help="draw a sample product photo (a bottle with a white label)")
    smp.add_argument("path", type=Path)
    return parser


def _add_settings(parser: argparse.ArgumentParser) -> None:
    """Where to store and how to paint: the same flags for one SKU and for the inbox."""
    parser.add_argument(
        "--store", help="a folder or s3://bucket/prefix (default $PRODVID_STORE or ./prodvid-data)"
    )
    parser.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default $PRODVID_S3_ENDPOINT_URL)")
    parser.add_argument("--preset", choices=models.PRESETS, help="offline random-weight models")
    parser.add_argument("--hero-model", help=f"hub id or folder (default {models.DEFAULT_HERO_MODEL})")
    parser.add_argument("--frames-model", help=f"hub id or folder (default {models.DEFAULT_FRAMES_MODEL})")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--dtype", choices=["float16", "bfloat16", "float32"])
    parser.add_argument(
        "--scheduler", help=f"diffusers scheduler: {', '.join(models.SCHEDULERS)} (default: the checkpoint's)"
    )
    parser.add_argument(
        "--speed",
        choices=list(SPEED_PRESETS),
        help="few-step preset: LCM-LoRA, lcm scheduler, 6 steps, guidance 1.5 on SD 1.5 or SDXL inpainting "
        "(fills in what other flags and PRODVID_* leave unset)",
    )
    parser.add_argument(
        "--lora",
        action="append",
        metavar="ID_OR_DIR[:SCALE]",
        help="a LoRA fused into both models: Hub id, folder or .safetensors file, scale 1 by default "
        "(repeat for more; default $PRODVID_LORA, comma-separated)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the UNet's and VAE's repeated blocks; cached in $PRODVID_CACHE/inductor",
    )
    parser.add_argument(
        "--offload",
        action="store_true",
        default=None,
        help="keep the models in CPU memory, each on the GPU only while it runs (GPUs under ~10 GB)",
    )
    parser.add_argument(
        "--variant",
        choices=["auto", "fp16", "none"],
        help="weight files (auto: fp16 on CUDA in float16)",
    )
    parser.add_argument("--steps", type=int, help="denoising steps per diffusion call (default 25)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (default 7.5)")
    presets = ", ".join(f"{name} {w}x{h}" for name, (w, h) in formats.PRESETS.items())
    parser.add_argument(
        "--format", help=f"output size: {presets}, or WxH with even sides (default $PRODVID_FORMAT or square)"
    )
    parser.add_argument("--size", type=int, help="square output of this side in px: the same as --format NxN")
    parser.add_argument(
        "--anchor", choices=formats.ANCHORS, help="where the product sits (default $PRODVID_ANCHOR or bottom)"
    )
    parser.add_argument(
        "--fill", type=float, help="largest share of the canvas width and height the product takes (0.7)"
    )
    parser.add_argument(
        "--margin", type=float, help="share of the canvas kept clear around the product on each side (0)"
    )
    parser.add_argument(
        "--lookahead", type=int, help="model px of camera travel one call paints ahead; 0 = per frame"
    )
    parser.add_argument(
        "--model-size", type=int, help="side of the square the models paint at (default: the checkpoint's)"
    )
    parser.add_argument(
        "--keep-frames",
        action="store_true",
        default=None,
        help="also store every frame as frames/<SKU>/00000.png … (default $PRODVID_KEEP_FRAMES or off)",
    )


def _positive(value: str) -> int:
    """A whole number from 1 to 64 (`--workers`)."""
    if not value.strip().isdigit() or not 1 <= int(value) <= 64:
        raise argparse.ArgumentTypeError(f"has to be a whole number from 1 to 64 but is {value!r}")
    return int(value)


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        args.preset,
        hero_model=args.hero_model, frames_model=args.frames_model, device=args.device, dtype=args.dtype,
        scheduler=args.scheduler, steps=args.steps, guidance=args.guidance, format=args.format,
        size=args.size, anchor=args.anchor, fill=args.fill, margin=args.margin, lookahead=args.lookahead,
        model_size=args.model_size, batch_size=getattr(args, "batch_size", None),
        keep_frames=args.keep_frames, speed=args.speed, lora=args.lora, compile=args.compile,
        offload=args.offload, variant=args.variant,
    )  # fmt: skip


def _brief(args: argparse.Namespace):
    data: dict = {}
    if args.brief:
        data = decode_brief(
            request.read_file(args.brief, "--brief", args.sku, MAX_BRIEF_BYTES),
            sku=args.sku,
            what=f"--brief {args.brief}",
        )
    if args.camera:
        data["camera"] = camera.parse_spec(args.camera, sku=args.sku, what="--camera")
    for one, other in (("format", "size"), ("num_frames", "seconds")):
        if getattr(args, one) is not None and getattr(args, other) is not None:
            raise ProdvidError(f"SKU {args.sku}: give --{one.replace('_', '-')} or --{other}, not both.")
    size = f"{args.size}x{args.size}" if args.size is not None else None
    flags = {
        "prompt": args.prompt, "negative_prompt": args.negative_prompt, "seed": args.seed,
        "num_frames": args.num_frames, "seconds": args.seconds, "fps": args.fps,
        "format": args.format or size, "anchor": args.anchor, "fill": args.fill, "margin": args.margin,
    }  # fmt: skip
    flags = {k: v for k, v in flags.items() if v is not None}
    if {"num_frames", "seconds"} & flags.keys():  # a flag for the length replaces the brief's length
        data = {k: v for k, v in data.items() if k not in ("num_frames", "seconds")}
    data.update(flags)
    return parse_brief(data, sku=args.sku)


def _warn(lines: list[str]) -> None:
    for line in lines:
        print(f"prodvid: warning: {line}", file=sys.stderr)


def _generate(args: argparse.Namespace) -> int:
    # 1. Check the whole request: nothing is written and no heavy library imported before it passes
    validate_sku(args.sku)
    brief = _brief(args)
    photo = request.read_file(args.image, "--image", args.sku, request.MAX_PHOTO_BYTES)
    settings = _settings(args)
    request.check_store(args.store)
    checked = request.check_sku(args.sku, photo, brief, settings)
    _warn(request.check_settings(settings) + checked.warnings)

    # 2. Make and store everything
    from prodvid_core.run import generate_sku
    from prodvid_core.storage import open_store

    _quiet_libraries()
    store = open_store(args.store, endpoint_url=args.s3_endpoint_url)
    hero_bar, on_hero_step = _hero_progress(f"{args.sku} hero")
    bar, reused, on_frame = _progress(checked.path.num_frames, f"{args.sku} frames")
    try:
        result = generate_sku(
            store, args.sku, photo, brief, settings, on_frame=on_frame, on_hero_step=on_hero_step,
            checked=checked,
        )  # fmt: skip
    finally:
        hero_bar.close()
        bar.close()
    print(_summary(result, reused[args.sku]))
    sku = args.sku
    for name, key in (
        ("canvas", layout.canvas_png(sku)),
        ("mask", layout.mask_png(sku)),
        ("hero image", layout.hero_png(sku)),
        ("frames", layout.frames_manifest(sku)),
        ("video", layout.video_mp4(sku)),
    ):
        print(f"  {name:<11} {store.url(key)}")
    return 0


def _summary(result, reused: int) -> str:
    """One line per SKU made (`result`: a `run.SkuResult`)."""
    fs = result.frames
    calls = f"{fs.calls_made} diffusion call{'' if fs.calls_made == 1 else 's'}"
    hero_state = "reused" if result.hero_reused else "made"
    video_state = "reused" if result.video_reused else "encoded"
    reused_note = f"{reused} reused from an earlier run"
    lease = leases.held()
    where = f" on {lease.describe()}" if lease is not None else ""
    return (
        f"SKU {fs.sku}: {fs.count} frames ({reused_note}), {calls}, "
        f"hero image {hero_state}, video {video_state}{where}."
    )


def _progress(total: int, desc: str):
    """A frames progress bar, the count of reused frames per SKU, and the `on_frame` that feeds both."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="frame", file=sys.stderr)
    reused: dict[str, int] = defaultdict(int)

    def on_frame(sku: str, record: dict, was_reused: bool) -> None:
        reused[sku] += was_reused
        bar.update(1)

    return bar, reused, on_frame


def _hero_progress(desc: str):
    """A bar of the hero calls' denoising steps and the `on_hero_step` that feeds it. Its total grows by a
    call's steps when the call starts: reused hero images cost none, a retried call costs its steps again.
    It stays at 0 steps when every hero image is reused."""
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit="step", file=sys.stderr)

    def on_hero_step(skus: list[str], step: int, steps: int) -> None:
        if step == 1:
            bar.total += steps
            bar.set_postfix_str(", ".join(skus) if len(skus) <= 3 else f"{len(skus)} SKUs", refresh=False)
        bar.update(1)

    return bar, on_hero_step


def _frames(args: argparse.Namespace) -> int:
    """Render a SKU's frames from the store (world + manifest) and write them to a local folder."""
    validate_sku(args.sku)
    request.check_store(args.store)
    from prodvid_core.manifest import read_manifest
    from prodvid_core.render import export_frames
    from prodvid_core.storage import open_store

    store = open_store(args.store, endpoint_url=args.s3_endpoint_url)
    manifest = read_manifest(store, args.sku)
    if manifest is None:
        raise ProdvidError(
            f"SKU {args.sku}: no frames in {store.url(layout.frames_manifest(args.sku))}; make them first "
            "(prodvid generate or prodvid inbox)."
        )
    try:
        paths = export_frames(store, args.sku, args.out, manifest)
    except OSError as e:
        raise ProdvidError(f"SKU {args.sku}: cannot write to --out {args.out}: {e.strerror}.") from None
    print(f"SKU {args.sku}: {len(paths)} frames written to {args.out}")
    return 0


# SKUs made per `generate_many` call: bounds the canvases and hero images held in memory at once.
INBOX_CHUNK = 64


def _inbox(args: argparse.Namespace) -> int:
    # 1. Check what the whole run shares: settings, models, device, store
    settings = _settings(args)
    request.check_store(args.store)
    _warn(request.check_settings(settings))
    from prodvid_core import inbox
    from prodvid_core.storage import open_store

    store = open_store(args.store, endpoint_url=args.s3_endpoint_url)
    found = inbox.scan(store)
    for key, why in sorted(found.rejected.items()):
        print(f"prodvid: skipped {key}: {why}", file=sys.stderr)
    for sku in found.waiting:
        print(f"prodvid: SKU {sku}: waiting for its brief, {layout.inbox_brief(sku)}", file=sys.stderr)
    for sku in args.sku or []:
        if sku not in found.ready:
            raise ProdvidError(
                f"SKU {sku}: not ready in the inbox: {store.url(layout.inbox_brief(sku))} and its photo must "
                "both be there and valid."
            )
    # 2. Each SKU's camera path at its format; a bad one is reported and left out, the others are made
    entries, paths, refused = {}, {}, 0
    for sku, entry in sorted(found.ready.items()):
        if args.sku and sku not in args.sku:
            continue
        try:
            paths[sku] = entry.brief.camera_path(sku, framing(entry.brief, settings).size)
        except ProdvidError as e:
            print(f"prodvid: error: {_one_line(e)}", file=sys.stderr)
            refused += 1
            continue
        entries[sku] = entry
    # 3. Make them: here, or split between `--workers` processes, each on its own leased device
    workers = min(args.workers or 1, len(entries))
    if workers > 1:
        made, failed = _in_workers(args, settings, entries, paths, workers)
    else:
        _quiet_libraries()
        made, failed = _make(store, entries, paths, settings, f"{len(entries)} SKUs")
    refused += failed
    print(f"{made} SKUs made." + (f" {refused} refused (see above)." if refused else ""))
    return 2 if found.rejected or refused else 0


def _make(store, entries: dict, paths: dict, settings: Settings, desc: str) -> tuple[int, int]:
    """Make the `entries` (inbox SKUs whose camera paths passed): SKUs made and SKUs refused."""
    from prodvid_core.run import generate_many

    hero_bar, on_hero_step = _hero_progress(f"{desc}, hero")
    bar, reused, on_frame = _progress(sum(paths[sku].num_frames for sku in entries), f"{desc}, frames")
    made = refused = 0
    try:
        skus = list(entries)
        for start in range(0, len(skus), INBOX_CHUNK):
            # Each SKU's photo, 64 at a time before any of them is painted; then make the good ones
            inputs, checked = {}, {}
            for sku in skus[start : start + INBOX_CHUNK]:
                photo, brief = store.read_bytes(entries[sku].photo_key), entries[sku].brief
                try:
                    checked[sku] = request.check_sku(sku, photo, brief, settings)
                except ProdvidError as e:
                    bar.write(f"prodvid: error: {_one_line(e)}", file=sys.stderr)
                    bar.update(paths[sku].num_frames)
                    refused += 1
                    continue
                for line in checked[sku].warnings:
                    bar.write(f"prodvid: warning: {line}", file=sys.stderr)
                inputs[sku] = photo, brief
            made_now = (
                generate_many(
                    store, inputs, settings, on_frame=on_frame, on_hero_step=on_hero_step, checked=checked
                )
                if inputs
                else {}
            )
            for sku, result in made_now.items():
                bar.write(f"{_summary(result, reused[sku])} {store.url(layout.video_mp4(sku))}")
                made += 1
    finally:
        hero_bar.close()
        bar.close()
    return made, refused


def _in_workers(args, settings: Settings, entries: dict, paths: dict, workers: int) -> tuple[int, int]:
    """`_make` in `workers` processes, SKUs dealt out in turn. Each process leases its own device when it
    loads its models (`leases`), so N workers on a host with N GPUs paint on N GPUs. A worker that dies
    counts its SKUs as not made; the next run resumes them."""
    import multiprocessing
    import queue

    context = multiprocessing.get_context("spawn")  # fresh processes: no CUDA state or locks inherited
    results = context.Queue()
    skus = list(entries)
    shares = [skus[k::workers] for k in range(workers)]
    processes = [
        context.Process(
            target=_worker,
            args=(
                k,
                args.store,
                args.s3_endpoint_url,
                settings,
                {s: entries[s] for s in share},
                {s: paths[s] for s in share},
                results,
            ),
            name=f"prodvid-worker-{k}",
        )  # fmt: skip
        for k, share in enumerate(shares)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    done = {}
    while len(done) < workers:
        try:
            k, made, refused = results.get(timeout=1)
        except queue.Empty:  # a worker died before it reported
            break
        done[k] = made, refused
    made = refused = 0
    for k, (process, share) in enumerate(zip(processes, shares, strict=True)):
        if k in done:
            made, refused = made + done[k][0], refused + done[k][1]
        else:
            names = ", ".join(share[:5]) + (", ..." if len(share) > 5 else "")
            print(
                f"prodvid: error: worker {k} (SKUs {names}) ended with exit code {process.exitcode}; "
                "run the same command again to resume them.",
                file=sys.stderr,
            )
            refused += len(share)
    return made, refused


def _worker(k: int, location, endpoint, settings: Settings, entries: dict, paths: dict, results) -> None:
    """One `--workers` process: make its share of the SKUs and report (worker, made, refused)."""
    from prodvid_core.storage import open_store

    _quiet_libraries()
    try:
        made, refused = _make(
            open_store(location, endpoint_url=endpoint), entries, paths, settings, f"worker {k}"
        )
    except ProdvidError as e:
        print(f"prodvid: error: {_one_line(e)}", file=sys.stderr)
        made, refused = 0, len(entries)
    results.put((k, made, refused))


def _serve(args: argparse.Namespace) -> int:
    from prodvid_core import media, serve
    from prodvid_core.storage import open_store

    def stop(_signum, _frame):  # SIGTERM (how `make ui` stops it) ends it as Ctrl-C does
        raise KeyboardInterrupt

    store = open_store(args.store, endpoint_url=args.s3_endpoint_url)
    signal.signal(signal.SIGTERM, stop)
    try:
        serve.serve(store, args.host, args.port, expires=media.expires_from_env())
    except OSError as e:
        raise ProdvidError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}.") from None
    except KeyboardInterrupt:
        pass
    return 0


def _one_line(error: BaseException) -> str:
    """An error message as exactly one line."""
    return " ".join(str(error).split("\n")).strip()


def _quiet_libraries() -> None:
    """The CLI shows its own progress bars; the libraries' load bars and import notices would bury them.

    Hugging Face's download bars stay on (transformers' switch turns them off too, so they are turned on
    again): a first run downloads gigabytes, and a person should see it happen. HF_HUB_DISABLE_PROGRESS_BARS=1
    still turns them off."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") is None and are_progress_bars_disabled():
        enable_progress_bars()


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage mistake already reported in one line
        return e.code if isinstance(e.code, int) else 2
    try:
        if args.command == "generate":
            return _generate(args)
        if args.command == "inbox":
            return _inbox(args)
        if args.command == "frames":
            return _frames(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "models":
            from prodvid_core import presets

            print(_written(lambda: presets.write_preset(args.models_command, args.directory), args.directory))
            return 0
        if args.command == "sample":
            from prodvid_core import sample

            def draw() -> Path:
                args.path.parent.mkdir(parents=True, exist_ok=True)
                sample.sample_product().save(args.path)
                return args.path

            print(_written(draw, args.path))
            return 0
    except ProdvidError as e:
        print(f"prodvid: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prodvid: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    return 1


def _written(write, path: Path):
    """Run `write`; a path that cannot be written to is a user mistake, not a traceback."""
    try:
        return write()
    except OSError as e:
        raise ProdvidError(f"cannot write {path}: {e.strerror or e}.") from None


if __name__ == "__main__":
    sys.exit(main())
