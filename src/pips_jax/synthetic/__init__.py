"""Synthetic point-tracking clips with exact, analytic ground truth.

A clip is a stack of layers painted back to front: a background photograph that moves
under a smooth homography, then ``num_objects`` textured convex polygons / ellipses,
each moving under its own smooth similarity transform (translation + rotation +
isotropic scale). Object ``k`` (layer id ``k``, ``1 <= k <= K``) is in front of every
layer with a smaller id; the background is layer 0. Training, the demo and the
synthetic benchmark all draw their clips from here.

Conventions (the same everywhere in pips_jax):

* Frame positions are ``(x, y)`` pixels with the origin at the CENTRE of the top-left
  pixel: integer coordinates hit pixel centres and the image area is
  ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``.
* Queries are ``(t, x, y)`` rows: a frame index and a position there.
* Every layer has its own *reference* plane. The background's reference plane is the
  frame-0 plane (``background_homographies[0]`` is the identity); an object's
  reference plane is its local shape frame (the shape is centred on the origin).
  ``background_homographies[t]`` (3x3) and ``object_affines[k - 1, t]`` (2x3) map
  reference coordinates to frame-``t`` pixels.
* Rendering inverse-maps every pixel centre into each layer and samples that layer's
  texture bilinearly (texture pixel centres at integer texture coordinates); a pixel
  belongs to object ``j`` when its inverse-mapped position is inside ``j``'s shape
  (``ObjectLayer.contains``). Ground truth uses the very same maps and the very same
  shape test, so a point is *visible* at frame ``t`` exactly when it lies in the image
  area and no nearer layer's shape covers it, and a visible point's rendered colour is
  its texture colour.

Modules, from the bottom: :mod:`.geometry` (maps and texture sampling),
:mod:`.textures` (photographs bundled with scikit-image, procedural textures),
:mod:`.config` (:class:`SyntheticConfig`), :mod:`.motion` (background and object
motions), :mod:`.scene` (layers, scenes, random scenes), :mod:`.render` (video and
exact ground truth), :mod:`.points` (point sampling) and :mod:`.clips` (:class:`Clip`,
:func:`generate_clip`, :func:`generate_batch`, :class:`SyntheticDataset`). The
TAP-Vid export of clips is :func:`pips_jax.evaluation.datasets.write_tapvid_pickle`;
training's augmentations are in :mod:`pips_jax.training.augment`.

Everything is NumPy and deterministic for a seed. ``texture_source="procedural"``
needs no scikit-image.
"""

from pips_jax.synthetic.clips import (
    Clip,
    SyntheticDataset,
    clip_from_scene,
    generate_batch,
    generate_clip,
    stack_clips,
)
from pips_jax.synthetic.config import SyntheticConfig
from pips_jax.synthetic.points import sample_points
from pips_jax.synthetic.render import ground_truth, render, surface_colors
from pips_jax.synthetic.scene import ObjectLayer, Scene, random_scene
from pips_jax.synthetic.textures import (
    BACKGROUND_IMAGES,
    OBJECT_IMAGES,
    PHOTO_NAMES,
    load_photo,
    procedural_texture,
)

__all__ = [
    "BACKGROUND_IMAGES",
    "OBJECT_IMAGES",
    "PHOTO_NAMES",
    "Clip",
    "ObjectLayer",
    "Scene",
    "SyntheticConfig",
    "SyntheticDataset",
    "clip_from_scene",
    "generate_batch",
    "generate_clip",
    "ground_truth",
    "load_photo",
    "procedural_texture",
    "random_scene",
    "render",
    "sample_points",
    "stack_clips",
    "surface_colors",
]
