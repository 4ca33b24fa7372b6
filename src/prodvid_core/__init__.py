"""prodvid core: exact-product hero images and panning videos, usable without Dagster.

The pipeline is five steps, each a plain function over images and an `ObjectStore`:
`canvas.expand` → `mask.segment` → `hero.generate` → `frames.generate` → `video.encode`.
`prodvid_core.run.generate_sku` chains them the way the CLI does.
"""

__version__ = "0.1.0"
