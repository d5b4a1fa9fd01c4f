"""The bundled demo benchmark: real CamVid street frames as a Cityscapes -> ACDC-style weather stream.

:mod:`.camvid` maps CamVid's labels to Cityscapes trainIds, chooses the frames of each split and writes
them in the Cityscapes and ACDC layouts; :mod:`.weather` renders fog, night, rain and snow. The command
line front end is ``tools/make_demo_data.py``; ``docs/demo_data.md`` describes the data.
"""
from .camvid import (CAMVID_TO_TRAINID, CamVidError, CamVidFrame, DemoItem, acdc_paths, build_demo_tree,
                     cityscapes_paths, frame_rng, list_camvid, plan_demo, read_frame, to_train_ids)
from .weather import (CONDITIONS, FogParams, NightParams, RainParams, SnowParams, WeatherParams,
                      ground_plane_depth, render)

__all__ = [
    'CAMVID_TO_TRAINID', 'CONDITIONS', 'CamVidError', 'CamVidFrame', 'DemoItem', 'FogParams', 'NightParams',
    'RainParams', 'SnowParams', 'WeatherParams', 'acdc_paths', 'build_demo_tree', 'cityscapes_paths',
    'frame_rng', 'ground_plane_depth', 'list_camvid', 'plan_demo', 'read_frame', 'render', 'to_train_ids',
]
