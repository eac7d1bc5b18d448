"""tools/contact_sheet.py: tiles, labels, missing tiles and shrinking."""

import numpy as np
import pytest

from spikereveal.tools.contact_sheet import contact_sheet


def test_grid_shape_and_tile_placement():
    red = np.zeros((20, 30, 3), np.uint8)
    red[..., 2] = 255
    sheet = contact_sheet([("a", [red, red]), ("b", [None, red])], ["t=1", "t=2"])
    banner = 28
    assert sheet.shape == (2 * (20 + banner), 2 * 30, 3)
    # row 0, column 0 is the red image below its banner; row 0 column 1 is the grey n/a tile
    assert tuple(sheet[banner + 1, 1]) == (0, 0, 255)
    assert tuple(sheet[banner + 1, 31]) == (96, 96, 96)


def test_wide_tiles_are_shrunk():
    big = np.zeros((500, 1600, 3), np.uint8)
    sheet = contact_sheet([("x", [big])], ["r"], max_tile_width=400)
    assert sheet.shape[1] == 400 and sheet.shape[0] == 125 + 28


def test_needs_a_column():
    with pytest.raises(ValueError, match="at least one column"):
        contact_sheet([], [])
