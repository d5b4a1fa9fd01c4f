"""Train the classification demo's source model on clean digits: ``python tools/train_cls_source.py``.

The model is the one of ``configs/cls/_base_/models/vit_digits.py`` (a small timm ViT), trained from
scratch on the ``train`` split of :mod:`imse_seg.cls.demo_digits` with light geometric augmentation
(no corruption is seen), AdamW and a one-cycle schedule, then saved as safetensors at the config's
checkpoint path. Clean accuracy on the ``tune`` and ``test`` splits is printed.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from mmengine.config import Config
from safetensors.torch import save_file
from timm.data import resolve_model_data_config
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from imse_seg.cls.demo_digits import digits_split
from imse_seg.cls.model import build_classifier


class AugmentedDigits(Dataset):
    """The train split as normalised tensors, each drawn with a random affine jitter."""

    def __init__(self, mean: tuple, std: tuple) -> None:
        images, labels = digits_split('train')
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2)
        self.labels = torch.from_numpy(labels)
        self.transform = v2.Compose([
            v2.RandomAffine(degrees=10, translate=(0.08, 0.08), scale=(0.9, 1.1), fill=255),
            v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[index]), self.labels[index]


def clean_accuracy(model: nn.Module, split: str, mean: tuple, std: tuple) -> float:
    """Top-1 accuracy (%) of ``model`` on the clean ``split``."""
    images, labels = digits_split(split)
    inputs = v2.Normalize(mean, std)(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    with torch.no_grad():
        predictions = model.eval()(inputs).argmax(1)
    return 100.0 * (predictions == torch.from_numpy(labels)).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='configs/cls/_base_/models/vit_digits.py')
    parser.add_argument('--out', help="where the checkpoint goes (default: the config's model.checkpoint)")
    parser.add_argument('--epochs', type=int, default=40)
    parser.add_argument('--lr', type=float, default=2e-3)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    cfg = Config.fromfile(args.config)
    model_cfg = dict(cfg.model)
    out = Path(args.out or model_cfg.pop('checkpoint'))
    model_cfg.pop('checkpoint', None)
    model = build_classifier(**model_cfg)
    data_cfg = resolve_model_data_config(model)
    mean, std = data_cfg['mean'], data_cfg['std']
    loader = DataLoader(AugmentedDigits(mean, std), batch_size=64, shuffle=True, drop_last=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, epochs=args.epochs,
                                                   steps_per_epoch=len(loader))
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        total = 0.0
        for inputs, labels in loader:
            loss = criterion(model(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        if epoch % 5 == 0 or epoch == args.epochs:
            print(f'epoch {epoch}: loss {total / len(loader):.3f}, clean tune accuracy '
                  f'{clean_accuracy(model, "tune", mean, std):.1f}% ({time.perf_counter() - started:.0f} s)',
                  flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(out))
    print(f'saved {out} ({out.stat().st_size / 1e6:.1f} MB); clean test accuracy '
          f'{clean_accuracy(model, "test", mean, std):.1f}%, training took {time.perf_counter() - started:.0f} s')


if __name__ == '__main__':
    main()
