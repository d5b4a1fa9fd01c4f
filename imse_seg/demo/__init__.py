"""The benchmark streams: real CamVid street frames as Cityscapes -> ACDC-style weather streams.

:mod:`.camvid` maps CamVid's labels to Cityscapes trainIds, plans which frames go where and writes them in
the ACDC and Cityscapes layouts; :mod:`.weather` renders fog, night, rain and snow; :mod:`.presets` names
the trees (plan + calibrated renderer parameters + size) the generator writes. The command line front end
is ``tools/make_demo_data.py``; ``docs/demo_data.md`` describes the data.
"""
from .camvid import (CAMVID_TO_TRAINID, CLEAR_PREFIX, CamVidError, CamVidFrame, DemoItem, acdc_paths,
                     build_demo_tree, cityscapes_paths, frame_rng, list_camvid, make_frame,
                     plan_camvid_stream, plan_demo, read_frame, to_train_ids)
from .presets import PRESETS, DemoPreset
from .weather import (CONDITIONS, TINY_SEGFORMER_WEATHER, FogParams, NightParams, RainParams, SnowParams,
                      WeatherParams, ground_plane_depth, render)

__all__ = [
    'CAMVID_TO_TRAINID', 'CLEAR_PREFIX', 'CONDITIONS', 'CamVidError', 'CamVidFrame', 'DemoItem', 'DemoPreset',
    'FogParams', 'NightParams', 'PRESETS', 'RainParams', 'SnowParams', 'TINY_SEGFORMER_WEATHER',
    'WeatherParams', 'acdc_paths', 'build_demo_tree', 'cityscapes_paths', 'frame_rng', 'ground_plane_depth',
    'list_camvid', 'make_frame', 'plan_camvid_stream', 'plan_demo', 'read_frame', 'render', 'to_train_ids',
]
