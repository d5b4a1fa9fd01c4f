"""mmseg's visualisation hook for a continual stream: overlays named by round and segment, not overwritten."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import mmcv
import mmengine.fileio as fileio
from mmseg.engine.hooks import SegVisualizationHook
from mmseg.registry import HOOKS
from mmseg.structures import SegDataSample

from ..stream_outputs import image_file


@HOOKS.register_module()
class StreamVisualizationHook(SegVisualizationHook):
    """mmseg's ``SegVisualizationHook`` whose test images are named by the stream's round and segment.

    mmseg's hook names a test image by its file name at step ``runner.iter``, which stays 0 through a test,
    so in a stream that shows every image once per round each round's drawing replaces the one before.
    Under :class:`~imse_seg.seg.engine.ContinualTestLoop` this hook names it by the loop's ``place``:

    - with ``test_out_dir`` (the argument of mmdet's ``DetVisualizationHook``; ``tools/adapt.py --show-dir``
      sets it), the drawing is written to ``test_out_dir/round_<r>/<segment>/<image stem>.png``;
    - without it, it goes to the visualizer's backends as ``<segment>_<image stem>`` at step ``<r>``: mmseg's
      ``tools/test.py --show-dir DIR`` sets the visualizer's ``save_dir``, and the local backend writes
      ``DIR/vis_data/vis_image/<segment>_<image stem>_<r>.png``.

    The drawing is mmseg's (``SegLocalVisualizer.add_datasample``: the ground truth overlaid on the image,
    left, and the prediction, right); ``interval`` counts the batches of each segment as mmseg's counts
    those of a test. Outside a stream, ``test_out_dir`` holds the drawings by image name; validation, and a
    test outside a stream without ``test_out_dir``, are mmseg's. The hook is off (``draw=False``) in the
    shared runtime config, where mmseg's would warn on every run that it draws nothing; this one does not.

    Args:
        test_out_dir: Folder of the drawn test images; None: the visualizer's backends.
        draw, interval, show, wait_time, backend_args: as ``SegVisualizationHook``'s.
    """

    def __init__(self, draw: bool = False, interval: int = 50, show: bool = False, wait_time: float = 0.,
                 backend_args: dict | None = None, test_out_dir: str | None = None) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='The draw is False')
            super().__init__(draw=draw, interval=interval, show=show, wait_time=wait_time,
                             backend_args=backend_args)
        self.test_out_dir = test_out_dir

    def _after_iter(self, runner, batch_idx: int, data_batch: dict, outputs: Sequence[SegDataSample],
                    mode: str = 'val') -> None:
        place = getattr(runner.test_loop, 'place', None) if mode == 'test' else None
        if not (place or (mode == 'test' and self.test_out_dir is not None)):
            super()._after_iter(runner, batch_idx, data_batch, outputs, mode)
            return
        if not self.draw or not self.every_n_inner_iters(batch_idx, self.interval):
            return
        for output in outputs:
            image = mmcv.imfrombytes(fileio.get(output.img_path, backend_args=self.backend_args),
                                     channel_order='rgb')
            stem = Path(output.img_path).stem
            out_file = None if self.test_out_dir is None else \
                str(image_file(self.test_out_dir, place or {}, output.img_path))
            self._visualizer.add_datasample(f'{place["segment"]}_{stem}' if place else f'test_{stem}', image,
                                            data_sample=output, show=self.show, wait_time=self.wait_time,
                                            out_file=out_file, step=place['round'] if place else runner.iter)
