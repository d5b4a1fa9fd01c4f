# The unadapted EfficientViT-Seg-B0 on the clear originals of the benchmark's frames (condition folders
# clear_fog ... clear_snow of data/camvid_stream), one round: with configs/efficientvit_camvid_ctta_source.py
# (rounds=1) it gives the source's per-condition ratio to clear on the same frames.
#     python tools/adapt.py configs/efficientvit_camvid_stream_clear.py      # split val: add
#         --cfg-options test_dataloader.dataset.split=val
_base_ = ['./efficientvit_camvid_ctta_source.py']
test_cfg = dict(
    rounds=1,
    segments=[dict(name=f'clear_{condition}', dataset=dict(condition=f'clear_{condition}'))
              for condition in ['fog', 'night', 'rain', 'snow']])
