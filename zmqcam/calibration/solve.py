"""Each camera's homography to one belt plane, from the board corners the cameras see.

Unknowns: per camera c a homography ``G_c`` (plane mm -> camera pixels, 8 degrees of freedom), and
per placement p (one sheet lying still while one set of frames is taken) a rigid motion ``T_p`` (board
mm -> plane mm: the sheet lies flat, so it can only turn and shift). The plane's frame is that of
the reference placement: the one most cameras see. Observations: the corners camera c found of
placement p, ``x = G_c(T_p(X))``.

1. Per observation, ``cv2.findHomography`` with RANSAC (board mm -> pixels) drops misread corners.
2. A breadth-first walk over the camera-placement graph chains the first estimates: a camera that sees
   a placement with a known motion gets ``G_c = G_cp T_p^-1``; a placement that a known camera sees
   gets the rigid motion that best fits its corners (Kabsch). Cameras the walk cannot reach are not
   linked to the others by any placement: CalibrationError.
3. Levenberg-Marquardt over all unknowns at once minimises the reprojection error in camera pixels,
   so a camera linked through several placements is not biased by the order of the walk. Each
   camera's update is expressed in coordinates normalised around its footprint, so that every
   parameter moves the image by a comparable amount (the problem is then well conditioned).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["RANSAC_PX", "Observation", "PlaneSolution", "reject_outliers", "rigid_fit", "solve_plane", "transform"]

#: RANSAC threshold when fitting one camera's view of one sheet: a corner further off is misread
RANSAC_PX = 2.0
#: a homography needs 4 points; fewer left after RANSAC and the view is dropped
_MIN_INLIERS = 4
_MAX_ITERATIONS = 100
_TOLERANCE = 1e-12  # relative decrease of the cost below which the refinement stops
_STEP = 1e-6  # numeric derivative step, in normalised parameter units


@dataclass(frozen=True)
class Observation:
    """The corners camera ``camera`` found of placement ``placement`` (indices)."""

    camera: int
    placement: int
    #: (n, 2) pixels of the camera's frame
    image_px: np.ndarray
    #: (n, 2) the same corners on the board, mm
    board_mm: np.ndarray


@dataclass(frozen=True)
class PlaneSolution:
    #: per camera: 3x3 camera pixels -> plane mm
    plane_from_camera: tuple[np.ndarray, ...]
    #: per placement: 3x3 board mm -> plane mm (a rigid motion); the reference one is the identity
    plane_from_board: tuple[np.ndarray, ...]
    reference: int
    #: per camera: root-mean-square reprojection error, camera pixels and plane mm
    error_px: tuple[float, ...]
    error_mm: tuple[float, ...]
    #: per camera: corners used
    inliers: tuple[int, ...]


def transform(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(n, 2) points through the 3x3 homography ``h``."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    out = pts @ h[:2, :2].T + h[:2, 2]
    w = pts @ h[2, :2] + h[2, 2]
    return out / w[:, None]


def rigid_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3: the rotation and translation that best maps ``src`` onto ``dst`` (least squares, Kabsch)."""
    cs, cd = src.mean(axis=0), dst.mean(axis=0)
    u, _, vt = np.linalg.svd((src - cs).T @ (dst - cd))
    r = vt.T @ u.T
    if np.linalg.det(r) < 0:  # a reflection: the closest proper rotation instead
        vt[1] *= -1
        r = vt.T @ u.T
    m = np.eye(3)
    m[:2, :2] = r
    m[:2, 2] = cd - r @ cs
    return m


def _normaliser(centre: np.ndarray, radius: float) -> np.ndarray:
    return np.array([[1 / radius, 0, -centre[0] / radius], [0, 1 / radius, -centre[1] / radius], [0, 0, 1.0]])


def _perturbation(d: np.ndarray) -> np.ndarray:
    return np.eye(3) + np.array([[d[0], d[1], d[2]], [d[3], d[4], d[5]], [d[6], d[7], 0.0]])


def _motion(d: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """A small rigid motion in board coordinates: turn by d[0] / radius about ``centre``, shift d[1:]."""
    a = d[0] / radius
    c, s = math.cos(a), math.sin(a)
    r = np.array([[c, -s], [s, c]])
    m = np.eye(3)
    m[:2, :2] = r
    m[:2, 2] = centre - r @ centre + d[1:3]
    return m


class _Problem:
    """The joint least-squares problem around the current estimates (updates compose onto them)."""

    def __init__(
        self,
        observations: Sequence[Observation],
        cameras: list[np.ndarray],
        boards: list[np.ndarray],
        moving: list[int],
        sizes: Sequence[tuple[int, int]],
    ) -> None:
        self.observations = observations
        self.cameras = cameras  # plane -> camera px
        self.boards = boards  # board -> plane
        #: the placements whose motion is refined (all seen ones but the reference)
        self.moving = moving
        self.norms = []
        for g, (w, h) in zip(cameras, sizes, strict=True):
            inv = np.linalg.inv(g)
            centre = transform(inv, np.array([[(w - 1) / 2, (h - 1) / 2]]))[0]
            corner = transform(inv, np.array([[0.0, 0.0]]))[0]
            self.norms.append(_normaliser(centre, max(float(np.linalg.norm(corner - centre)), 1e-6)))
        self.board_pivots = {}
        for p in moving:
            pts = np.concatenate([o.board_mm for o in observations if o.placement == p])
            centre = pts.mean(axis=0)
            self.board_pivots[p] = (centre, max(float(np.abs(pts - centre).max()), 1.0))
        self.size = 8 * len(cameras) + 3 * len(self.moving)

    def models(self, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        cams = [
            g @ np.linalg.inv(n) @ _perturbation(x[8 * c : 8 * c + 8]) @ n
            for c, (g, n) in enumerate(zip(self.cameras, self.norms, strict=True))
        ]
        boards = list(self.boards)
        base = 8 * len(self.cameras)
        for k, p in enumerate(self.moving):
            centre, radius = self.board_pivots[p]
            boards[p] = self.boards[p] @ _motion(x[base + 3 * k : base + 3 * k + 3], centre, radius)
        return cams, boards

    def residuals(self, x: np.ndarray) -> np.ndarray:
        cams, boards = self.models(x)
        parts = [
            (transform(cams[o.camera] @ boards[o.placement], o.board_mm) - o.image_px).ravel()
            for o in self.observations
        ]
        return np.concatenate(parts)

    def jacobian(self, x: np.ndarray, r0: np.ndarray) -> np.ndarray:
        jac = np.empty((r0.size, self.size))
        for j in range(self.size):
            step = x.copy()
            step[j] += _STEP
            jac[:, j] = (self.residuals(step) - r0) / _STEP
        return jac

    def refine(self) -> None:
        """Levenberg-Marquardt; the estimates are updated in place."""
        damping = 1e-3
        x = np.zeros(self.size)
        r = self.residuals(x)
        cost = float(r @ r)
        done = False
        for _ in range(_MAX_ITERATIONS):
            jac = self.jacobian(x, r)
            a = jac.T @ jac
            g = jac.T @ r
            improved = False
            for _ in range(12):
                step = np.linalg.solve(a + damping * np.diag(np.diag(a) + 1e-12), -g)
                trial = self.residuals(step)
                trial_cost = float(trial @ trial)
                if trial_cost < cost:
                    self.cameras, self.boards = self.models(step)
                    self.cameras = [c / c[2, 2] for c in self.cameras]
                    done = cost - trial_cost <= _TOLERANCE * cost
                    r, cost, improved = self.residuals(x), trial_cost, True
                    damping = max(damping / 3, 1e-9)
                    break
                damping *= 4
            if not improved or done:
                return


def _first_estimates(
    observations: Sequence[Observation], n_cameras: int, n_placements: int, reference: int
) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
    """Breadth-first: plane -> camera homographies and board -> plane motions, chained from ``reference``."""
    cameras: list[np.ndarray | None] = [None] * n_cameras
    boards: list[np.ndarray | None] = [None] * n_placements
    boards[reference] = np.eye(3)
    queue: deque[tuple[str, int]] = deque([("placement", reference)])
    seen_by: dict[int, list[Observation]] = {p: [] for p in range(n_placements)}
    for o in observations:
        seen_by[o.placement].append(o)
    while queue:
        kind, index = queue.popleft()
        if kind == "placement":
            board = boards[index]
            assert board is not None
            for o in seen_by[index]:
                if cameras[o.camera] is None:
                    g, _ = cv2.findHomography(o.board_mm, o.image_px, 0)
                    cameras[o.camera] = g @ np.linalg.inv(board)
                    queue.append(("camera", o.camera))
        else:
            cam = cameras[index]
            assert cam is not None
            for o in observations:
                if o.camera == index and boards[o.placement] is None:
                    # the placement's corners in the plane, from every camera known so far
                    src, dst = [], []
                    for other in seen_by[o.placement]:
                        known = cameras[other.camera]
                        if known is not None:
                            src.append(other.board_mm)
                            dst.append(transform(np.linalg.inv(known), other.image_px))
                    boards[o.placement] = rigid_fit(np.concatenate(src), np.concatenate(dst))
                    queue.append(("placement", o.placement))
    return cameras, boards


def reject_outliers(observations: Sequence[Observation], n_cameras: int) -> tuple[list[Observation], list[int]]:
    """Each observation without the corners RANSAC finds off its homography by more than ``RANSAC_PX``
    (misread corners), and per camera how many were dropped. An observation left with fewer than
    ``_MIN_INLIERS`` corners is dropped whole."""
    kept: list[Observation] = []
    outliers = [0] * n_cameras
    for o in observations:
        _, mask = cv2.findHomography(o.board_mm, o.image_px, cv2.RANSAC, RANSAC_PX)
        inlier = np.zeros(len(o.board_mm), bool) if mask is None else mask.ravel().astype(bool)
        if inlier.sum() < _MIN_INLIERS:
            outliers[o.camera] += len(o.board_mm)
            continue
        outliers[o.camera] += int((~inlier).sum())
        kept.append(Observation(o.camera, o.placement, o.image_px[inlier], o.board_mm[inlier]))
    return kept, outliers


def solve_plane(
    observations: Sequence[Observation], sizes: Sequence[tuple[int, int]], n_placements: int
) -> tuple[PlaneSolution | None, list[int]]:
    """Solve for every camera (``sizes``: each camera's frame size, by index) from observations
    (misread corners dropped: ``reject_outliers``). Returns the solution and the cameras the
    observations link to the reference placement; when that is not all of them, the solution is None
    (the caller names the cameras that are cut off)."""
    n_cameras = len(sizes)
    kept = list(observations)
    cams_of: dict[int, set[int]] = {p: set() for p in range(n_placements)}
    for o in kept:
        cams_of[o.placement].add(o.camera)
    reference = max(
        range(n_placements),
        key=lambda p: (len(cams_of[p]), sum(len(o.board_mm) for o in kept if o.placement == p), -p),
    )
    cameras, boards = _first_estimates(kept, n_cameras, n_placements, reference)
    linked = [c for c in range(n_cameras) if cameras[c] is not None]
    if len(linked) < n_cameras:
        return None, linked
    # a placement no camera kept corners of stays out of the problem (identity, unused)
    moving = [p for p in range(n_placements) if boards[p] is not None and p != reference]
    problem = _Problem(
        kept,
        [c for c in cameras if c is not None],
        [b if b is not None else np.eye(3) for b in boards],
        moving,
        sizes,
    )
    problem.refine()
    error_px, error_mm, inliers = [], [], []
    for c in range(n_cameras):
        mine = [o for o in kept if o.camera == c]
        g = problem.cameras[c]
        inv = np.linalg.inv(g)
        px = np.concatenate([transform(g @ problem.boards[o.placement], o.board_mm) - o.image_px for o in mine])
        mm = np.concatenate(
            [transform(inv, o.image_px) - transform(problem.boards[o.placement], o.board_mm) for o in mine]
        )
        error_px.append(float(np.sqrt((px**2).sum(axis=1).mean())))
        error_mm.append(float(np.sqrt((mm**2).sum(axis=1).mean())))
        inliers.append(sum(len(o.board_mm) for o in mine))
    plane_from_camera = tuple(np.linalg.inv(g) / np.linalg.inv(g)[2, 2] for g in problem.cameras)
    solution = PlaneSolution(
        plane_from_camera,
        tuple(problem.boards),
        reference,
        tuple(error_px),
        tuple(error_mm),
        tuple(inliers),
    )
    return solution, linked
