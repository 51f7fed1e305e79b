"""How the generated SpMM (spmm_tir.py) cuts a conv's virtual pixels into tiles and bands, and
in which order a band's (group, tile) items go to the threads."""
from __future__ import annotations

from dataclasses import dataclass

from .geometry import ConvGeometry
from .tir_text import VectorISA

_BAND_BYTES = 1 << 20
_SPLIT_PIXELS = 512  # 2 threads x kMinSplitPixels


@dataclass(frozen=True)
class Tiling:
    """How a conv's virtual pixels are cut: tiles of lanes * nv pixels (the last one `tail`
    long), taken in bands of `band_tiles` tiles whose input (~_BAND_BYTES) stays in L2."""

    lanes: int
    nv: int
    tile: int
    n_tiles: int
    tail: int
    band_tiles: int
    n_bands: int
    tile_major: bool  # a band's items tile by tile (all groups of a tile), not group by group

    @classmethod
    def of(cls, geom: ConvGeometry, rows: int, isa: VectorISA, out_channels: int) -> "Tiling":
        lanes, nv = isa.lanes, isa.nv(rows)
        tile = lanes * nv
        n_tiles = -(-geom.pixels // tile)
        in_band = max(1, geom.in_channels * len(geom.phases) * tile * 4)
        band_tiles = int(min(max(_BAND_BYTES // in_band, 1), n_tiles))
        # A layer that reads more per pixel than it writes (a projection) on a large image:
        # with group-major items each thread took some groups of every tile and read the whole
        # band; tile by tile, thread t reads only its run of the band's pixels (the native
        # kernels' pixel shares, kernels/src/common/split.h).
        tile_major = (geom.in_channels * len(geom.phases) >= out_channels
                      and geom.pixels >= _SPLIT_PIXELS and band_tiles >= 4)
        return cls(lanes, nv, tile, n_tiles, geom.pixels - (n_tiles - 1) * tile, band_tiles,
                   -(-n_tiles // band_tiles), tile_major)
