"""A picture of the result: one row per output time, one column per method, labelled."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BANNER_PX = 28


def _labelled(image: np.ndarray, label: str) -> np.ndarray:
    """Image with a dark banner on top carrying ``label``."""
    banner = np.full((_BANNER_PX, image.shape[1], 3), 32, dtype=np.uint8)
    cv2.putText(banner, label, (6, _BANNER_PX - 9), _FONT, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([banner, image])


def contact_sheet(
    columns: Sequence[tuple[str, Sequence[np.ndarray | None]]],
    row_labels: Sequence[str],
    max_tile_width: int = 400,
) -> np.ndarray:
    """Tile images into a grid: ``columns`` is [(title, [image per row or None])], all (H, W, 3) uint8.

    Tiles wider than ``max_tile_width`` are shrunk (INTER_AREA) so a 1000x1600 sequence still
    gives a sheet one can open; a missing image (None) becomes a grey tile saying so.
    """
    if not columns:
        raise ValueError("contact sheet needs at least one column")
    first = next(img for _, imgs in columns for img in imgs if img is not None)
    height, width = first.shape[:2]
    scale = min(1.0, max_tile_width / width)
    tile_hw = (round(height * scale), round(width * scale))
    rows = []
    for r, row_label in enumerate(row_labels):
        tiles = []
        for title, images in columns:
            image = images[r]
            if image is None:
                tile = np.full((*tile_hw, 3), 96, dtype=np.uint8)
                cv2.putText(tile, "n/a", (8, tile_hw[0] // 2), _FONT, 0.8, (220, 220, 220), 2, cv2.LINE_AA)
            else:
                tile = cv2.resize(image, tile_hw[::-1], interpolation=cv2.INTER_AREA) if scale < 1 else image
            tiles.append(_labelled(tile, f"{title} | {row_label}"))
        rows.append(np.hstack(tiles))
    return np.vstack(rows)
