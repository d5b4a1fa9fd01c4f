# Adaptation methods for SegFormer (mmseg MixVisionTransformer backbone + decode head with `conv_seg`).
# Each is the config of one AdaptationSetupHook method; a benchmark config picks one with
#     custom_hooks = [dict(type='AdaptationSetupHook', method={{_base_.<name>}})]
# Spectral roles (methods.md 1.1): MHA packed in_proj + out_proj, and the two 1x1 convs of the Mix-FFN.
# As IMSE trains the singular values of the earlier blocks and uses the last blocks only for diversity,
# stages 1-3 (layers.0-2) train and the last stage (layers.3) carries the diversity loss.
spectral_roles = ['backbone.layers.*.1.*.attn.attn', 'backbone.layers.*.1.*.ffn.layers.0',
                  'backbone.layers.*.1.*.ffn.layers.4']
trained_stages = ['backbone.layers.[012].*']
diversity_stage = ['backbone.layers.3.*']
# Diversity weight: the official loss is -lambda * sum over layers / (number of blocks), lambda = 50; the
# DiversityTerm averages over layers (4 per block), so lambda * 4 = 200 is the same loss.
diversity_weight = 200.0
# CTTA segmentation code uses Adam 6e-5 / 8 on SegFormer-B5 for TENT and CoTTA (methods.md 3).
norm_lr = 7.5e-6
spectral_lr = 1e-4

# IMSE's code bank on the first patch embedding's tokens, top-1 retrieval (official). Unlike the official
# bank, a returning condition's code goes back into its entry (refresh_entries): with the same images each
# round, the official bank's appended entries tie and top-1 reloads the first round's code forever.
code_bank = dict(feature_module='backbone.layers.0.0', full_batch_size=1,
                 retrieval=dict(type='TopOneRetrieval'), refresh_entries=True)

source = dict(type='Source')
tent = dict(
    type='EntropyAdaptation',
    parameters=dict(type='NormParameters'),
    objective=dict(entropy=dict(type='EntropyTerm')),
    optimizer=dict(type='Adam', lr=norm_lr, betas=(0.9, 0.999)))
tent_stag = dict(
    type='EntropyAdaptation',
    parameters=dict(type='NormParameters'),
    objective=dict(entropy=dict(type='EntropyTerm'), stag=dict(type='StagTerm', weight=1.0)),
    optimizer=dict(type='Adam', lr=norm_lr, betas=(0.9, 0.999)))
imse = dict(
    type='EntropyAdaptation',
    parameters=dict(type='SpectralParameters', convert=spectral_roles, train=trained_stages),
    objective=dict(entropy=dict(type='EntropyTerm', margin=0.4),
                   diversity=dict(type='DiversityTerm', weight=diversity_weight, layers=diversity_stage, ratio=1.0)),
    optimizer=dict(type='Adam', lr=spectral_lr),
    sam_rho=0.05,
    code_bank=code_bank)
imse_stag = dict(
    type='EntropyAdaptation',
    parameters=dict(type='SpectralParameters', convert=spectral_roles, train=trained_stages),
    objective=dict(entropy=dict(type='EntropyTerm', margin=0.4),
                   diversity=dict(type='DiversityTerm', weight=diversity_weight, layers=diversity_stage, ratio=1.0),
                   stag=dict(type='StagTerm', weight=1.0)),
    optimizer=dict(type='Adam', lr=spectral_lr),
    sam_rho=0.05,
    code_bank=code_bank)
# CoTTA as its segmentation code runs it: 14 teacher views, anchor confidence 0.69, EMA 0.999, restore 0.01.
cotta = dict(type='CoTTA', optimizer=dict(type='Adam', lr=norm_lr, betas=(0.9, 0.999)))
# The published baselines re-create their optimiser at every condition change (boundary knowledge a
# deployed model lacks); the CoTTA paper's TENT is cross-entropy to its own arg-max on all norm layers.
tent_published = dict(
    type='EntropyAdaptation',
    parameters=dict(type='NormParameters'),
    objective=dict(self_training=dict(type='SelfTrainingTerm')),
    optimizer=dict(type='Adam', lr=norm_lr, betas=(0.9, 0.999)),
    reset_each_segment=True)
cotta_published = dict(cotta, reset_each_segment=True)
# Ablations of the flagship (docs/results.md), one part removed each; `imse` is imse_stag without STAG.
imse_stag_no_diversity = dict(imse_stag, objective=dict(entropy=imse_stag['objective']['entropy'],
                                                        stag=imse_stag['objective']['stag']))
imse_stag_no_retrieval = dict(imse_stag, code_bank=None)

# --- Baselines of issue 17 (docs/baselines.md) ---
# BN statistics adaptation, no gradient: every BatchNorm layer normalises with the test batch's moments
# (`bn_stats`, the "BN adapt" row of CTTA tables) or with Schneider et al. 2020's blend of source and test
# moments, weight 0.1 on the test image (`bn_stats_blend`; the best weight of issue 16's EfficientViT-B0
# measurement, not re-tuned here). SegFormer's backbone normalises with LayerNorm, which has no running
# moments: only the decode head's fusion ConvModule has a BatchNorm, so these move little on SegFormer;
# they are the first rows on BatchNorm models.
bn_stats = dict(type='NormStatisticsAdaptation', statistics=dict(type='TestStatistics'))
bn_stats_blend = dict(type='NormStatisticsAdaptation', statistics=dict(type='BlendedStatistics', weight=0.1))
# SAR (mr-eggplant/SAR sar.py, main.py): norm affines, reliable entropy e0 = 0.4 ln K, SAM rho 0.05 around SGD
# momentum 0.9, recovery when the loss average falls below 0.2. The official parameter choice leaves out the
# top of the network (ResNet layer4, ViT-B blocks 9-11 and the final norm); here, likewise, the last stage
# (layers.3, as IMSE's trained stages) and the decode head. BatchNorm normalises with test moments as in
# sar.configure_model. The learning rate is the official ViT-B rule, 0.001 / 64 x batch size, at batch 1.
sar = dict(
    type='SAR',
    parameters=dict(type='NormParameters', exclude=['backbone.layers.3.*', 'decode_head.*'],
                    statistics=dict(type='TestStatistics')),
    optimizer=dict(type='SGD', lr=0.001 / 64, momentum=0.9),
    margin=0.4, sam_rho=0.05, reset_constant=0.2)
# ViDA (Yangsenqiao/vida imagenet/vida.py; no public segmentation code): ranks 1 and 128 (imagenet/conf.py),
# beside the Mix-FFN's two 1x1 convs of every block (nn.MultiheadAttention reads its projections' weights
# directly, so no module-level adapter can sit beside them); every parameter trains (official
# collect_params), Adam as in the segmentation CTTA code of methods.md 3 at the full-model rate of CoTTA
# here, adapters at a tenth of it (cifar/cfgs/cifar10/vida.yaml: 1e-4 and 1e-5); teacher EMA 0.999 and
# adapter EMA 0.8, 10 views, uncertainty threshold 0.2 (imagenet/cfgs/vit/vida.yaml, conf.py). Not tuned.
vida = dict(
    type='ViDA',
    targets=['backbone.layers.*.1.*.ffn.layers.0', 'backbone.layers.*.1.*.ffn.layers.4'],
    low_rank=1, high_rank=128,
    optimizer=dict(type='Adam', lr=norm_lr, betas=(0.9, 0.999)), adapter_lr=norm_lr / 10,
    views=dict(type='RandomViews', num_views=10),
    uncertainty_threshold=0.2, teacher_momentum=0.999, adapter_momentum=0.8)
