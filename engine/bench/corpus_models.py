"""The models of `bench corpus`: real architectures as users bring them, built from the
`transformers` package's configs (random weights, no downloads; a bench-only dependency) and
hand-written ones (recurrent classifiers, a 1-D audio CNN, a U-Net), each with the inputs it is
called with. Sizes are small enough to measure and to run under qemu in minutes, large enough
that the layers are real GEMMs (hidden sizes 128-256, images 64-96, sequences 32-128).

Each builder returns (model in eval mode, positional inputs, keyword inputs).
"""
from __future__ import annotations

import torch
from torch import nn

from ..zoo.init import he_init


def _image(size: int):
    return (torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)),)


def _ids(n: int, vocab: int):
    return torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(0))


def _vit_like(name: str):
    import transformers as T
    cls, cfg_cls, extra = {"vit": (T.ViTModel, T.ViTConfig, {"intermediate_size": 768}),
                           "deit": (T.DeiTModel, T.DeiTConfig, {"intermediate_size": 768}),
                           "dinov2": (T.Dinov2Model, T.Dinov2Config, {"mlp_ratio": 4})}[name]
    cfg = cfg_cls(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, image_size=64,
                  patch_size=8, **extra)
    return cls(cfg).eval(), _image(64), {}


def _mobilenet(version: int):
    import transformers as T
    if version == 1:
        m = T.MobileNetV1Model(T.MobileNetV1Config(image_size=96, depth_multiplier=0.5))
    else:
        m = T.MobileNetV2Model(T.MobileNetV2Config(image_size=96, depth_multiplier=0.5))
    return he_init(m).eval(), _image(96), {}


def _efficientnet():
    import transformers as T
    cfg = T.EfficientNetConfig(image_size=96, width_coefficient=0.5, depth_coefficient=0.5,
                               hidden_dim=640)
    return he_init(T.EfficientNetModel(cfg)).eval(), _image(96), {}


def _bert():
    import transformers as T
    cfg = T.BertConfig(vocab_size=1000, hidden_size=256, num_hidden_layers=4,
                       num_attention_heads=4, intermediate_size=1024, max_position_embeddings=128)
    mask = torch.ones(1, 64, dtype=torch.int64)
    mask[0, 56:] = 0
    return T.BertModel(cfg).eval(), (_ids(64, 1000),), {"attention_mask": mask}


def _t5():
    import transformers as T
    cfg = T.T5Config(vocab_size=1000, d_model=256, d_kv=64, d_ff=1024, num_layers=4, num_heads=4)
    return T.T5EncoderModel(cfg).eval(), (_ids(64, 1000),), {}


def _gpt2_cfg():
    import transformers as T
    return T.GPT2Config(vocab_size=1000, n_embd=256, n_layer=4, n_head=4, n_positions=256,
                        bos_token_id=0, eos_token_id=0)


def _gpt2():
    import transformers as T
    return T.GPT2Model(_gpt2_cfg()).eval(), (_ids(64, 1000),), {"use_cache": False}


def _gpt2_decode():
    """One token after 64, with its KV cache (transformers' DynamicCache)."""
    import transformers as T
    torch.manual_seed(0)
    model = T.GPT2LMHeadModel(_gpt2_cfg()).eval()
    with torch.no_grad():
        cache = model(_ids(64, 1000), use_cache=True).past_key_values
    return model, (_ids(1, 1000),), {"cache": cache, "use_cache": True}


class RecurrentClassifier(nn.Module):
    """Token ids -> Embedding -> 2-layer LSTM or bidirectional GRU -> Linear on the last step."""

    def __init__(self, kind: str, vocab: int = 1000, dim: int = 128, hidden: int = 256,
                 classes: int = 10):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        if kind == "lstm":
            self.rnn = nn.LSTM(dim, hidden, num_layers=2, batch_first=True)
            out = hidden
        else:
            self.rnn = nn.GRU(dim, hidden, batch_first=True, bidirectional=True)
            out = 2 * hidden
        self.head = nn.Linear(out, classes)

    def forward(self, ids):
        y, _ = self.rnn(self.emb(ids))
        return self.head(y[:, -1])


class AudioCNN(nn.Module):
    """A keyword-spotting 1-D CNN over 40 MFCC-like features x 128 frames: conv stem, strided,
    depthwise-separable and dilated Conv1d blocks, global pool, Linear."""

    def __init__(self, feats: int = 40, width: int = 128, classes: int = 12):
        super().__init__()
        layers = [nn.Conv1d(feats, width, 5, padding=2), nn.BatchNorm1d(width), nn.ReLU()]
        for i in range(4):
            layers += [nn.Conv1d(width, width, 3, stride=2 if i % 2 == 0 else 1, padding=1,
                                 groups=width), nn.Conv1d(width, 2 * width, 1),
                       nn.BatchNorm1d(2 * width), nn.ReLU(),
                       nn.Conv1d(2 * width, width, 3, dilation=2, padding=2),
                       nn.BatchNorm1d(width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.body(x).mean(-1))


class UNet(nn.Module):
    """Three levels (64-128-256 channels), ConvTranspose2d up-sampling, skip concatenations."""

    def __init__(self, cin: int = 3, classes: int = 2, w: int = 64):
        super().__init__()

        def block(a, b):
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(),
                                 nn.Conv2d(b, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU())
        self.d1, self.d2, self.mid = block(cin, w), block(w, 2 * w), block(2 * w, 4 * w)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.u2 = block(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.u1 = block(2 * w, w)
        self.out = nn.Conv2d(w, classes, 1)

    def forward(self, x):
        a = self.d1(x)
        b = self.d2(self.pool(a))
        c = self.mid(self.pool(b))
        b = self.u2(torch.cat([self.up2(c), b], 1))
        return self.out(self.u1(torch.cat([self.up1(b), a], 1)))


def _recurrent(kind: str):
    torch.manual_seed(0)
    return RecurrentClassifier(kind).eval(), (_ids(32, 1000),), {}


def _audio():
    torch.manual_seed(0)
    x = torch.randn(1, 40, 128, generator=torch.Generator().manual_seed(0))
    return he_init(AudioCNN()).eval(), (x,), {}


def _unet():
    torch.manual_seed(0)
    return he_init(UNet()).eval(), _image(64), {}


def _detr():
    import transformers as T
    cfg = T.DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False,
                       backbone_config=T.ResNetConfig(embedding_size=32, hidden_sizes=[32, 64,
                                                      128, 256], depths=[1, 1, 1, 1],
                                                      out_features=["stage4"]),
                       d_model=128, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                       decoder_attention_heads=4, encoder_ffn_dim=512, decoder_ffn_dim=512,
                       num_queries=20, num_labels=10)
    return he_init(T.DetrForObjectDetection(cfg)).eval(), _image(96), {}


MODELS = {
    "vit": lambda: _vit_like("vit"), "deit": lambda: _vit_like("deit"),
    "dinov2": lambda: _vit_like("dinov2"), "efficientnet": _efficientnet,
    "mobilenet_v1": lambda: _mobilenet(1), "mobilenet_v2": lambda: _mobilenet(2),
    "t5_encoder": _t5, "bert": _bert, "gpt2": _gpt2, "gpt2_decode": _gpt2_decode,
    "detr": _detr, "lstm": lambda: _recurrent("lstm"), "gru": lambda: _recurrent("gru"),
    "audio_cnn": _audio, "unet": _unet,
}
