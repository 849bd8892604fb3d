"""Procedural Shapes3D: an object in a room's corner, on the published 3dshapes grid, rendered on demand.

Grid from Burgess & Kim 2018 (github.com/deepmind/3d-shapes): floor hue 10, wall hue 10, object hue 10 (hues
linspace(0, 0.9, 10)); scale 8 (linspace(0.75, 1.25, 8)); shape 4 (cube, cylinder, sphere, capsule); orientation 15
(linspace(-30, 30, 15) degrees of camera azimuth).  Sizes ``[10, 10, 10, 8, 4, 15]``, (64, 64, 3) uint8.

The scene is orthographic, seen from 25 degrees above.  Orientation turns the camera: the room's corner slides sideways and the
cube and capsule turn with it.  Geometry and shading depend only on (shape, scale, orientation) and colour only on the three
hues, so rendering a batch is a gather from precomputed tables plus one blend:

* per orientation, the premultiplied Lambert shade of the wall and of the floor (15 x 64 x 64, antialiased);
* per (shape, scale, orientation), the object's coverage and premultiplied shade (480 x 64 x 64, antialiased);
* image = object_rgb * object_shade + (1 - coverage) * (wall_rgb * wall_shade + floor_rgb * floor_shade).
"""

import colorsys

import numpy as np

from submission.data.factor_grid import FactorGridDataset

SHAPES3D_FACTOR_SIZES = (10, 10, 10, 8, 4, 15)
SHAPES3D_FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
SHAPE_NAMES = ("cube", "cylinder", "sphere", "capsule")
HUES = np.linspace(0.0, 0.9, 10)
SCALES = np.linspace(0.75, 1.25, 8)
ORIENTATION_DEGREES = np.linspace(-30.0, 30.0, 15)
IMAGE_SIZE = 64
SUPERSAMPLE = 3
ELEVATION = np.deg2rad(25.0)
OBJECT_X, OBJECT_BASE_Y = 32.0, 50.0   # pixel of the object's footprint centre
BASE_HALF_WIDTH, BASE_HEIGHT = 8.0, 15.0  # pixels at scale 1
CORNER_PIXELS_PER_DEGREE = 0.8
LIGHT = np.array([-0.45, 0.7, 0.55]) / np.linalg.norm([-0.45, 0.7, 0.55])  # camera frame: x right, y up, z to camera
AMBIENT = 0.35

# Saturated hues as in the published images; value 1, so the shade alone sets brightness.
HUE_RGB = np.array([colorsys.hsv_to_rgb(hue, 0.85, 1.0) for hue in HUES], dtype=np.float32)


def _sample_grid():
    """Pixel coordinates (x right, y down) of the supersampled image: two (S*64, S*64) float arrays."""
    n = IMAGE_SIZE * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / SUPERSAMPLE
    return np.meshgrid(coords, coords)


def _downsample(values):
    """Average SxS blocks: (..., S*64, S*64) -> (..., 64*64) float32 (the antialiasing)."""
    shape = values.shape[:-2] + (IMAGE_SIZE, SUPERSAMPLE, IMAGE_SIZE, SUPERSAMPLE)
    return values.reshape(shape).mean(axis=(-3, -1)).reshape(values.shape[:-2] + (-1,)).astype(np.float32)


def _lambert(normals):
    """AMBIENT + diffuse shade of unit normals (..., 3) in the camera frame."""
    return AMBIENT + (1.0 - AMBIENT) * np.clip(normals @ LIGHT, 0.0, 1.0)


def render_room_tables():
    """(wall, floor) premultiplied shades, each (15, 4096) float32: a corner whose position follows the camera azimuth."""
    x, y = _sample_grid()
    corner_x = OBJECT_X + CORNER_PIXELS_PER_DEGREE * ORIENTATION_DEGREES[:, None, None]
    # The corner is farthest from the camera, so its foot is highest; the floor edges fall away from it.
    edge_y = 30.0 + 0.35 * np.abs(x[None] - corner_x)
    wall = y[None] < edge_y
    left = x[None] < corner_x
    wall_shade = np.where(left, 0.78, 0.95) - 0.004 * (edge_y - y[None])
    floor_shade = 0.62 + 0.35 * np.clip((y[None] - 30.0) / 34.0, 0.0, 1.0)
    return _downsample(wall * wall_shade), _downsample(~wall * floor_shade)


def _rotate_y(vectors, azimuth):
    """Rotate world vectors (..., 3) about the vertical by ``azimuth`` radians (the object relative to the camera)."""
    cos, sin = np.cos(azimuth), np.sin(azimuth)
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    return np.stack([cos * x + sin * z, y, -sin * x + cos * z], axis=-1)


def _to_camera(vectors):
    """World directions (x right, y up, z to the camera) into the camera frame tilted down by ELEVATION."""
    cos, sin = np.cos(ELEVATION), np.sin(ELEVATION)
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    return np.stack([x, cos * y - sin * z, sin * y + cos * z], axis=-1)


def _project(points):
    """Screen (x, y) pixels of world points (..., 3) relative to the footprint centre (orthographic, y down)."""
    camera = _to_camera(points)
    return OBJECT_X + camera[..., 0], OBJECT_BASE_Y - camera[..., 1]


def _cube(x, y, half, azimuth):
    """(coverage, shade) of a cube of half-width ``half`` standing on the floor, turned by ``azimuth``: visible faces only."""
    inside, shade = np.zeros_like(x, bool), np.zeros_like(x)
    for axis, sign in ((0, 1), (0, -1), (2, 1), (2, -1), (1, 1)):  # four sides and the top (the bottom is never seen)
        normal = np.zeros(3)
        normal[axis] = sign
        camera_normal = _to_camera(_rotate_y(normal, azimuth))
        if camera_normal[2] <= 0:
            continue
        u_axis, v_axis = [a for a in range(3) if a != axis]
        centre = normal * half + np.array([0.0, half, 0.0])
        corner = centre.copy()
        corner[u_axis] -= half
        corner[v_axis] -= half
        edge_u, edge_v = np.zeros(3), np.zeros(3)
        edge_u[u_axis], edge_v[v_axis] = 2 * half, 2 * half
        ox, oy = _project(_rotate_y(corner, azimuth))
        ux, uy = np.subtract(_project(_rotate_y(corner + edge_u, azimuth)), (ox, oy))
        vx, vy = np.subtract(_project(_rotate_y(corner + edge_v, azimuth)), (ox, oy))
        determinant = ux * vy - uy * vx
        # The pixel as corner + a * edge_u + b * edge_v on screen; inside the face when 0 <= a, b <= 1.
        a = ((x - ox) * vy - (y - oy) * vx) / determinant
        b = ((y - oy) * ux - (x - ox) * uy) / determinant
        face = (a >= 0) & (a <= 1) & (b >= 0) & (b <= 1) & ~inside
        shade[face] = _lambert(camera_normal)
        inside |= face
    return inside, shade


def _swept_sphere(x, y, start, end, radius):
    """(coverage, shade) of a sphere of ``radius`` swept along the screen segment start->end (sphere, capsule, cylinder side).

    The normal at a pixel points from the nearest point of the segment, tilted toward the camera as on a sphere.
    """
    (sx, sy), (ex, ey) = start, end
    dx, dy = ex - sx, ey - sy
    length2 = max(dx * dx + dy * dy, 1e-9)
    t = np.clip(((x - sx) * dx + (y - sy) * dy) / length2, 0.0, 1.0)
    u, v = (x - sx - t * dx) / radius, (y - sy - t * dy) / radius
    r2 = u * u + v * v
    inside = r2 <= 1.0
    normals = np.stack([u, -v, np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))], axis=-1)
    return inside, _lambert(normals)


def _cylinder(x, y, radius, height):
    """(coverage, shade) of an upright cylinder: a tube-shaded side under an elliptical top."""
    sin = np.sin(ELEVATION)
    top_y = OBJECT_BASE_Y - height * np.cos(ELEVATION)
    u = (x - OBJECT_X) / radius
    side = (np.abs(u) <= 1) & (y >= top_y) & (y <= OBJECT_BASE_Y + radius * sin * np.sqrt(np.clip(1 - u * u, 0, 1)))
    top = u * u + ((y - top_y) / (radius * sin)) ** 2 <= 1.0
    side_normals = np.stack([u, np.zeros_like(u), np.sqrt(np.clip(1 - u * u, 0, 1))], axis=-1)
    shade = np.where(top, _lambert(_to_camera(np.array([0.0, 1.0, 0.0]))), _lambert(side_normals))
    return side | top, shade


def _object(shape, scale, azimuth, x, y):
    half = BASE_HALF_WIDTH * scale
    if shape == 0:
        return _cube(x, y, half, azimuth)
    if shape == 1:
        return _cylinder(x, y, half, BASE_HEIGHT * scale)
    if shape == 2:
        centre = _project(np.array([0.0, half * 1.15, 0.0]))
        return _swept_sphere(x, y, centre, centre, half * 1.15)
    # Capsule lying on the floor along the object's x axis: it turns with the camera, as the cube does.
    radius = 0.6 * half
    ends = [_project(_rotate_y(np.array([sign * 1.1 * half, radius, 0.0]), azimuth)) for sign in (-1, 1)]
    return _swept_sphere(x, y, ends[0], ends[1], radius)


def render_object_tables():
    """(coverage, premultiplied shade), each (4, 8, 15, 4096) float32, for every (shape, scale, orientation)."""
    x, y = _sample_grid()
    coverage = np.zeros((4, 8, 15, IMAGE_SIZE * IMAGE_SIZE), np.float32)
    shaded = np.zeros_like(coverage)
    for shape in range(4):
        for s, scale in enumerate(SCALES):
            for o, degrees in enumerate(ORIENTATION_DEGREES):
                # The object's own yaw is 35 degrees off the camera so the cube shows two sides at every orientation.
                inside, shade = _object(shape, scale, np.deg2rad(35.0 + degrees), x, y)
                coverage[shape, s, o] = _downsample(inside.astype(np.float32))
                shaded[shape, s, o] = _downsample(inside * shade)
    return coverage, shaded


_TABLES = {}


def _tables():
    if not _TABLES:
        _TABLES["room"] = render_room_tables()
        _TABLES["object"] = render_object_tables()
    return _TABLES["room"], _TABLES["object"]


def render_shapes3d(factors):
    """uint8 (N, 64, 64, 3) images of checked (N, 6) int64 factors."""
    (wall_shade, floor_shade), (coverage, object_shade) = _tables()
    floor, wall, hue, scale, shape, orientation = factors.T
    alpha = coverage[shape, scale, orientation][..., None]
    room = (wall_shade[orientation][..., None] * HUE_RGB[wall][:, None, :] +
            floor_shade[orientation][..., None] * HUE_RGB[floor][:, None, :])
    image = object_shade[shape, scale, orientation][..., None] * HUE_RGB[hue][:, None, :] + (1.0 - alpha) * room
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(len(factors), IMAGE_SIZE, IMAGE_SIZE, 3)


class Shapes3dSim(FactorGridDataset):
    """Procedural Shapes3D, grid ``[10, 10, 10, 8, 4, 15]``, (64, 64, 3) uint8; no file needed."""

    name = "shapes3d_sim"
    standin_version = 1
    factor_sizes = SHAPES3D_FACTOR_SIZES
    factor_names = SHAPES3D_FACTOR_NAMES
    _observation_shape = (64, 64, 3)

    def _images(self, factors):
        return render_shapes3d(factors)
