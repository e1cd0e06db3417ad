"""PyTorch modules of the from-scratch families (pretrained families wrap library models).

Imported only inside family methods, so loading a family module loads no torch. Attention uses
separate query/key/value/output projections (not a fused in-projection) so each maps one-to-one
onto Keras' ``MultiHeadAttention`` and onto what pruning and dynamic quantization act on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from green_deploy.errors import ConfigError

if TYPE_CHECKING:
    from efficientnet_lite_pytorch import EfficientNet

LAYER_NORM_EPS = 1e-5


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, causal: bool):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.causal = heads, causal
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.output = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        # The inner width is the projections', not the input's: structured (head) pruning makes
        # them differ.
        inner = self.query.out_features
        head_dim = inner // self.heads

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split_heads(self.query(x)),
            split_heads(self.key(x)),
            split_heads(self.value(x)),
            is_causal=self.causal,
        )
        return self.output(out.transpose(1, 2).reshape(batch, length, inner))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, causal: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attention = Attention(dim, heads, causal)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ResNetCNN(nn.Module):
    """Stem, stages of basic residual blocks (stride 2 entering each stage after the first), pool, linear."""

    def __init__(self, widths: tuple[int, ...], blocks_per_stage: int, n_outputs: int, batch_norm_eps: float):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0], eps=batch_norm_eps),
            nn.ReLU(),
        )
        blocks, channels = [], widths[0]
        for stage, width in enumerate(widths):
            for index in range(blocks_per_stage):
                blocks.append(
                    BasicBlock(channels, width, 2 if stage > 0 and index == 0 else 1, batch_norm_eps)
                )
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(widths[-1], n_outputs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.blocks(self.stem(images)).mean(dim=(2, 3)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, batch_norm_eps: float):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, eps=batch_norm_eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=batch_norm_eps)
        self.shortcut = (
            nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=batch_norm_eps)
            )
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(x)).relu()
        out = self.bn2(self.conv2(out))
        return (out + self.shortcut(x)).relu()


class ViT(nn.Module):
    """Patch embedding, learned positions, pre-LN blocks, mean-pooled tokens, linear classifier."""

    def __init__(
        self, n_patches: int, patch_size: int, dim: int, depth: int, heads: int, mlp_dim: int, n_outputs: int
    ):
        super().__init__()
        self.patch_embedding = nn.Conv2d(1, dim, patch_size, patch_size)
        self.position_embedding = nn.Parameter(torch.randn(1, n_patches, dim) * 0.02)
        self.blocks = nn.Sequential(
            *(TransformerBlock(dim, heads, mlp_dim, causal=False) for _ in range(depth))
        )
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.classifier = nn.Linear(dim, n_outputs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embedding(images).flatten(2).transpose(1, 2) + self.position_embedding
        return self.classifier(self.norm(self.blocks(tokens)).mean(dim=1))


class ByteTransformerLM(nn.Module):
    """Causal byte-level language model: byte and position embeddings, pre-LN blocks, next-byte logits."""

    def __init__(self, context: int, dim: int, depth: int, heads: int, mlp_dim: int, vocab: int):
        super().__init__()
        self.byte_embedding = nn.Embedding(vocab, dim)
        self.position_embedding = nn.Parameter(torch.randn(1, context, dim) * 0.02)
        self.blocks = nn.Sequential(
            *(TransformerBlock(dim, heads, mlp_dim, causal=True) for _ in range(depth))
        )
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.lm_head = nn.Linear(dim, vocab)

    def forward(self, byte_ids: torch.Tensor) -> torch.Tensor:
        length = byte_ids.shape[1]
        x = self.byte_embedding(byte_ids) + self.position_embedding[:, :length]
        return self.lm_head(self.norm(self.blocks(x)))


class ByteLSTM(nn.Module):
    """Left-padded byte ids through an LSTM; the last step's output feeds the classifier."""

    def __init__(self, vocab: int, embedding_dim: int, hidden_dim: int, n_outputs: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, batch_first=True)
        self.classifier = nn.Linear(hidden_dim, n_outputs)

    def forward(self, byte_ids: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.lstm(self.embedding(byte_ids))
        return self.classifier(outputs[:, -1])


class NgramBag(nn.Module):
    """fastText-style classifier: the mean of hashed n-gram embeddings (padding excluded), then linear."""

    def __init__(self, n_buckets: int, dim: int, n_outputs: int):
        super().__init__()
        self.embedding = nn.EmbeddingBag(n_buckets, dim, mode="mean", padding_idx=0)
        self.classifier = nn.Linear(dim, n_outputs)

    def forward(self, ngram_ids: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embedding(ngram_ids))


class BackboneHead(nn.Module):
    """``head(backbone(x))``, L2-normalised when ``normalize`` (retrieval compares by cosine).

    The shape of the pretrained families: training freezes ``backbone`` and fits ``head`` on
    features computed once.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, normalize: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.backbone(x))
        return F.normalize(out, p=2.0, dim=-1) if self.normalize else out


class EfficientNetLiteBackbone(nn.Module):
    """Fashion-MNIST pixels in [0, 1] (N, 1, 28, 28) to pooled EfficientNet-Lite features (N, 1280)."""

    def __init__(self, net: EfficientNet, factor: int, pixel_mean: float, pixel_std: float):
        super().__init__()
        self.net = net
        self.factor = factor
        self.pixel_mean, self.pixel_std = pixel_mean, pixel_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x * 255.0 - self.pixel_mean) / self.pixel_std
        if self.factor > 1:
            # nearest-exact picks source floor((i + 0.5) / f), so no float rounding can shift a
            # pixel; for a whole factor it is plain replication, like Keras' UpSampling2D.
            x = F.interpolate(x, scale_factor=self.factor, mode="nearest-exact")
        x = x.expand(-1, 3, -1, -1)
        return self.net.extract_features(x).mean(dim=(2, 3))


class MaskedMeanPooling(nn.Module):
    """Token ids (N, L) through a BERT-style encoder, then the mean of its last hidden states over
    non-padding tokens (N, D); an all-padding row gives 0, as ``keras_layers.MaskedMean`` does."""

    def __init__(self, encoder: nn.Module, pad_id: int = 0):
        super().__init__()
        self.bert = encoder
        self.pad_id = pad_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = input_ids != self.pad_id
        hidden = self.bert(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class FirstTokenPooling(nn.Module):
    """Token ids (N, L) through a BERT-style encoder, then its first token's last hidden state (N, D)."""

    def __init__(self, encoder: nn.Module, pad_id: int = 0):
        super().__init__()
        self.bert = encoder
        self.pad_id = pad_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = (input_ids != self.pad_id).long()
        return self.bert(input_ids=input_ids, attention_mask=mask).last_hidden_state[:, 0]


class TokenClassifier(nn.Module):
    """Token ids (N, L) to a Hugging Face sequence classifier's logits (N, classes), padding masked out."""

    def __init__(self, classifier: nn.Module, pad_id: int = 0):
        super().__init__()
        self.classifier = classifier
        self.pad_id = pad_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.classifier(input_ids=input_ids, attention_mask=(input_ids != self.pad_id).long()).logits


class ImageClassifier(nn.Module):
    """Pixel values (N, 3, H, W) to a Hugging Face image classifier's logits (N, classes)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.classifier(pixel_values=pixel_values).logits


class PooledImageEncoder(nn.Module):
    """Pixel values through a Hugging Face vision encoder to one vector per image (N, D): its
    pooled output where it has one, else its last states averaged over tokens or positions."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.encoder(pixel_values=pixel_values)
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)
        hidden = out.last_hidden_state
        return hidden.mean(dim=1) if hidden.ndim == 3 else hidden.mean(dim=(2, 3))


class ExportedProgramModule(nn.Module):
    """The module a ``torch.export`` program unlifts to, as a plain module: its train/eval mode was
    fixed when it was exported (the unlifted module refuses ``eval()``), so switching it is a no-op."""

    def __init__(self, program: nn.Module):
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> ExportedProgramModule:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)
