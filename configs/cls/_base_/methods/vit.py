# Adaptation methods for a timm VisionTransformer (blocks.<i>.attn.qkv/proj, blocks.<i>.mlp.fc1/fc2, head).
# A method config is picked by a run config with  method = {{_base_.<name>}}.
# Spectral roles (methods.md 1.1): the packed qkv, the attention projection and both MLP layers of every
# block. IMSE trains the singular values of all blocks but the last three, which are converted too and carry
# the diversity loss (methods.md 1.3); the patterns below are for a 6-block ViT (the demo; ViT-B/16 with 12
# blocks: trained_blocks = ['blocks.[0-8].*'], diversity_blocks = ['blocks.9.*', 'blocks.1[01].*']).
spectral_roles = ['blocks.*.attn.qkv', 'blocks.*.attn.proj', 'blocks.*.mlp.fc1', 'blocks.*.mlp.fc2']
trained_blocks = ['blocks.[0-2].*']
diversity_blocks = ['blocks.[3-5].*']
# Official diversity loss: -lambda * sum over layers / vm_num blocks, lambda = 50; the DiversityTerm averages
# over layers (4 per block), so 4 * 50 = 200 is the same loss.
diversity_weight = 200.0
# Reliable-entropy margin e0 = 0.4 ln K (SAR/IMSE, methods.md 1.2).
margin = 0.4
# Learning rates chosen on the digits demo's tune split (continual, batch 32), not on the reported test split:
# TENT SGD lr in {1e-4, 1e-3, 1e-2}, IMSE Adam lr in {1e-3, 3e-3, 1e-2, 3e-2} (docs/results_classification.md).
# The STAG variants reuse them.
norm_lr = 1e-4
spectral_lr = 1e-3

source = dict(type='Source')
tent = dict(
    type='EntropyAdaptation',
    parameters=dict(type='NormParameters'),
    objective=dict(entropy=dict(type='EntropyTerm')),
    optimizer=dict(type='SGD', lr=norm_lr, momentum=0.9))
tent_stag = dict(
    type='EntropyAdaptation',
    parameters=dict(type='NormParameters'),
    objective=dict(entropy=dict(type='EntropyTerm'), stag=dict(type='StagTerm', weight=1.0, classifier='head')),
    optimizer=dict(type='SGD', lr=norm_lr, momentum=0.9))
imse = dict(
    type='EntropyAdaptation',
    parameters=dict(type='SpectralParameters', convert=spectral_roles, train=trained_blocks),
    objective=dict(entropy=dict(type='EntropyTerm', margin=margin),
                   diversity=dict(type='DiversityTerm', weight=diversity_weight, layers=diversity_blocks, ratio=1.0)),
    optimizer=dict(type='Adam', lr=spectral_lr),
    sam_rho=0.05,
    # The bank's full_batch_size (statistics update on full batches only, methods.md 1.4) is the data's
    # batch size unless set here: the runner fills it in.
    code_bank=dict(feature_module='patch_embed', retrieval=dict(type='TopOneRetrieval')))
imse_stag = dict(
    imse,
    objective=dict(imse['objective'], stag=dict(type='StagTerm', weight=1.0, classifier='head')))

# --- Baselines of issue 17 (docs/baselines.md) ---
# BN statistics adaptation (NormStatisticsAdaptation) needs BatchNorm layers; a ViT normalises with LayerNorm
# only, which has no running moments, so there is no `bn_stats` for it (the method refuses such a model). It
# runs on the classification path for BatchNorm models, e.g. method = dict(type='NormStatisticsAdaptation',
# statistics=dict(type='TestStatistics')).
# SAR (mr-eggplant/SAR sar.py, main.py): norm affines except the last three blocks and the final norm
# (sar.collect_params: ViT-B blocks 9-11 and `norm`; here `diversity_blocks`, the last three of the demo's six),
# reliable entropy e0 = 0.4 ln K, SAM rho 0.05 around SGD momentum 0.9 at lr 0.001 / 64 x batch size: here
# for the demo's batch 32 (the official ViT-B run, batch 64, has 1e-3), recovery below 0.2.
sar = dict(
    type='SAR',
    parameters=dict(type='NormParameters', exclude=diversity_blocks + ['norm']),
    optimizer=dict(type='SGD', lr=0.001 / 64 * 32, momentum=0.9),
    margin=margin, sam_rho=0.05, reset_constant=0.2)
# ViDA (Yangsenqiao/vida imagenet/vida.py, inject_vida.py, conf.py, cfgs/vit/vida.yaml): adapters of ranks 1
# and 128 beside the Linear layers of every attention (qkv, proj); every parameter trains, SGD (nesterov,
# momentum 0.9) at 5e-7, adapters at 2e-7; teacher EMA 0.999, adapter EMA 0.8; 10 views; uncertainty
# threshold 0.2 (the --unc_thr default); official values for ViT-B on ImageNet-C at batch 50.
vida = dict(
    type='ViDA',
    targets=['blocks.*.attn.qkv', 'blocks.*.attn.proj'],
    low_rank=1, high_rank=128,
    optimizer=dict(type='SGD', lr=5e-7, momentum=0.9, dampening=0.0, nesterov=True), adapter_lr=2e-7,
    views=dict(type='RandomViews', num_views=10),
    uncertainty_threshold=0.2, teacher_momentum=0.999, adapter_momentum=0.8)
