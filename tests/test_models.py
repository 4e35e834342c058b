"""The seed model layer by layer as SEED.md describes it; checkpoints round-trip exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unmix.model.model_file import load_model, save_model
from unmix.model.networks import (
    ARCHITECTURES,
    ConsistentSeparator,
    GlobalContext,
    SeedAutoencoder,
    UNetSeparator,
    build_model,
    model_config,
)

SEED_CONFIG = model_config("seed", 32, 3, False, "mean")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> SeedAutoencoder:
    torch.manual_seed(0)
    return SeedAutoencoder().eval()


@pytest.fixture(scope="module")
def mixture() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


def layer_types(sequential: nn.Sequential) -> list[type]:
    return [type(layer) for layer in sequential]


def shapes_after(sequential: nn.Sequential, x: torch.Tensor, kind: type) -> list[tuple[int, ...]]:
    """Run `sequential` on x, recording the output shape of every layer of type `kind`."""
    shapes = []
    with torch.no_grad():
        for layer in sequential:
            x = layer(x)
            if isinstance(layer, kind):
                shapes.append(tuple(x.shape))
    return shapes


# --- encoder ---------------------------------------------------------------------------------------------


def test_encoder_convolutions_match_the_seed(model):
    convs = [layer for layer in model.encoder if isinstance(layer, nn.Conv2d)]
    # (in, out, kernel, stride, padding) from SEED.md
    expected = [(3, 32, 4, 2, 1), (32, 64, 4, 1, 1), (64, 64, 4, 1, 1), (64, 64, 4, 2, 1), (64, 128, 6, 1, 0)]
    got = [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs]
    assert got == expected


def test_encoder_has_leaky_relu_after_every_conv_but_the_last(model):
    conv, act = nn.Conv2d, nn.LeakyReLU
    assert layer_types(model.encoder) == [conv, act, conv, act, conv, act, conv, act, conv]


def test_encoder_shapes_layer_by_layer(model, mixture):
    # 32 -(k4 s2 p1)-> 16 -(k4 s1 p1)-> 15 -> 14 -(k4 s2 p1)-> 7 -(k6)-> 2
    assert shapes_after(model.encoder, mixture, nn.Conv2d) == [
        (2, 32, 16, 16),
        (2, 64, 15, 15),
        (2, 64, 14, 14),
        (2, 64, 7, 7),
        (2, 128, 2, 2),
    ]


# --- decoders --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["decoder_1", "decoder_2"])
def test_decoder_transposed_convolutions_match_the_seed(model, name):
    decoder = getattr(model, name)
    convs = [layer for layer in decoder if isinstance(layer, nn.ConvTranspose2d)]
    # (in, out, kernel, stride, padding, output_padding) from SEED.md
    expected = [
        (128, 64, 2, 1, 0, 0),
        (64, 64, 4, 2, 1, 1),
        (64, 64, 4, 1, 0, 0),
        (64, 32, 4, 1, 0, 0),
        (32, 3, 4, 2, 1, 1),
    ]
    got = [
        (c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0], c.output_padding[0]) for c in convs
    ]
    assert got == expected


@pytest.mark.parametrize("name", ["decoder_1", "decoder_2"])
def test_decoder_shapes_layer_by_layer(model, name):
    latent = torch.zeros(2, 128, 2, 2)
    decoder = getattr(model, name)
    # (i - 1) * s - 2p + k + op: 2 -> 1+2 = 3 -> 2*2-2+4+1 = 7 -> 6+4 = 10 -> 9+4 = 13
    #                            -> 12*2-2+4+1 = 27
    assert shapes_after(decoder, latent, nn.ConvTranspose2d) == [
        (2, 64, 3, 3),
        (2, 64, 7, 7),
        (2, 64, 10, 10),
        (2, 32, 13, 13),
        (2, 3, 27, 27),
    ]
    # then nearest upsampling by 32/27 to 32 x 32, and Tanh
    assert shapes_after(decoder, latent, nn.UpsamplingNearest2d) == [(2, 3, 32, 32)]
    assert layer_types(decoder)[-2:] == [nn.UpsamplingNearest2d, nn.Tanh]


@pytest.mark.parametrize("name", ["decoder_1", "decoder_2"])
def test_decoder_has_leaky_relu_between_transposed_convs_only(model, name):
    layers = [layer for layer in getattr(model, name) if not isinstance(layer, nn.Dropout2d)]
    ct, act = nn.ConvTranspose2d, nn.LeakyReLU
    assert [type(layer) for layer in layers] == [
        ct,
        act,
        ct,
        act,
        ct,
        act,
        ct,
        act,
        ct,
        nn.UpsamplingNearest2d,
        nn.Tanh,
    ]


@pytest.mark.parametrize(("name", "after"), [("decoder_1", 2), ("decoder_2", 3)])
def test_decoder_dropout_position(model, name, after):
    decoder = list(getattr(model, name))
    dropouts = [i for i, layer in enumerate(decoder) if isinstance(layer, nn.Dropout2d)]
    assert len(dropouts) == 1
    (position,) = dropouts
    assert decoder[position].p == pytest.approx(0.3)
    convs_before = sum(isinstance(layer, nn.ConvTranspose2d) for layer in decoder[:position])
    assert convs_before == after  # after the 2nd (decoder 1) / 3rd (decoder 2) transposed conv
    assert isinstance(decoder[position + 1], nn.ConvTranspose2d)  # and before the next one


def test_no_dropout_in_the_encoder(model):
    assert not any(isinstance(layer, (nn.Dropout, nn.Dropout2d)) for layer in model.encoder)


# --- whole model -----------------------------------------------------------------------------------------


def test_forward_gives_two_images_in_tanh_range(model):
    big = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 100
    with torch.no_grad():
        out_1, out_2 = model(big)
    assert out_1.shape == out_2.shape == (3, 3, 32, 32)
    for out in (out_1, out_2):
        assert out.min() >= -1 and out.max() <= 1


def test_parameter_count_by_hand(model):
    # conv params = in * out * k * k + out
    # encoder: 3*32*16+32 = 1568; 32*64*16+64 = 32832; 2 * (64*64*16+64) = 2 * 65600;
    #          64*128*36+128 = 295040               -> 460640
    # decoder: 128*64*4+64 = 32832; 2 * 65600; 64*32*16+32 = 32800; 32*3*16+3 = 1539 -> 198371
    # total: 460640 + 2 * 198371 = 857382
    assert sum(p.numel() for p in model.encoder.parameters()) == 460640
    assert sum(p.numel() for p in model.decoder_1.parameters()) == 198371
    assert sum(p.numel() for p in model.parameters()) == 857382


def test_dropout_makes_training_mode_stochastic_and_eval_deterministic(mixture):
    torch.manual_seed(0)
    net = SeedAutoencoder()
    with torch.no_grad():
        net.train()
        first, second = net(mixture)[0], net(mixture)[0]
        assert not torch.equal(first, second)
        net.eval()
        assert torch.equal(net(mixture)[0], net(mixture)[0])


def test_decoders_are_separate_modules_with_separate_weights(model):
    assert model.decoder_1 is not model.decoder_2
    assert not torch.equal(model.decoder_1[0].weight, model.decoder_2[0].weight)


def test_build_model_known_and_unknown_arch():
    assert set(ARCHITECTURES) == {"seed", "unet"}
    assert isinstance(build_model("seed"), SeedAutoencoder)
    assert isinstance(build_model("unet"), UNetSeparator)
    assert isinstance(build_model("seed", consistency=True, mix="mean"), ConsistentSeparator)
    with pytest.raises(ValueError, match="unknown arch 'vae'; expected one of seed, unet"):
        build_model("vae")


# --- unet and mixture consistency ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_unet_gives_two_full_size_images_at_every_depth(depth, mixture):
    out_1, out_2 = build_model("unet", width=8, depth=depth).eval()(mixture)
    assert out_1.shape == out_2.shape == mixture.shape


def test_unet_width_and_depth_set_the_channels_of_each_scale():
    net = UNetSeparator(width=8, depth=3)
    assert [block[0][0].out_channels for block in net.down] == [16, 32, 64]
    assert net.stem[0][0].out_channels == 8 and net.head.out_channels == 6


def test_top_width_narrows_full_resolution_alone(mixture):
    net = UNetSeparator(width=8, depth=3, top_width=4)
    assert net.stem[0][0].out_channels == 4 and net.head.in_channels == 4
    assert [block[0][0].out_channels for block in net.down] == [16, 32, 64]
    assert [fuse[0][0].in_channels for fuse in net.fuse] == [8, 32, 64]  # 4 + 4 upsampled at the top
    assert net.eval()(mixture)[0].shape == mixture.shape
    assert "top_width" not in model_config("unet", 8, 3, False, "mean")
    assert model_config("unet", 8, 3, False, "mean", top_width=4)["top_width"] == 4


def test_unet_has_a_skip_connection_at_every_scale(mixture):
    # Each fuse block takes the upsampled features and the same-scale encoder features.
    net = UNetSeparator(width=8, depth=3)
    assert [fuse[0][0].in_channels for fuse in net.fuse] == [16, 32, 64]


@pytest.mark.parametrize("size", [(32, 32), (48, 24)])
def test_unet_with_attention_gives_full_size_images_at_any_trained_multiple(size):
    torch.manual_seed(0)
    mixture = torch.rand(2, 3, *size) * 2 - 1
    net = build_model("unet", width=8, depth=3, attention=True).eval()
    assert isinstance(net.context, GlobalContext)
    out_1, out_2 = net(mixture)
    assert out_1.shape == out_2.shape == mixture.shape


def test_global_context_lets_every_position_see_the_whole_map():
    # A 3×3 convolution at (0, 0) cannot see (3, 3); after the block, every position can.
    torch.manual_seed(0)
    block = GlobalContext(8, heads=2).eval()
    features = torch.randn(1, 8, 4, 4)
    changed = features.clone()
    changed[0, :, 3, 3] += 1.0
    with torch.no_grad():
        before, after = block(features), block(changed)
    moved = (after - before).abs().sum(1)[0]  # (4, 4)
    assert (moved > 1e-4).all()


def test_attention_is_in_the_config_only_when_used():
    assert "attention" not in model_config("unet", 8, 2, True, "mean")
    config = model_config("unet", 8, 2, True, "mean", attention=True)
    assert config["attention"] is True
    assert build_model(**config).separator.context is not None
    assert build_model(**model_config("unet", 8, 2, True, "mean")).separator.context is None


@pytest.mark.parametrize("mix", ["quarter_sum", "mean", "half_difference"])
@pytest.mark.parametrize("arch", ["seed", "unet"])
def test_consistent_outputs_mix_back_to_the_input(arch, mix, mixture):
    from unmix.model.mixing import MIXES

    torch.manual_seed(0)
    model = build_model(arch, width=8, depth=2, consistency=True, mix=mix).eval()
    with torch.no_grad():
        out_1, out_2 = model(mixture)
    assert torch.allclose(MIXES[mix](out_1, out_2), mixture, atol=1e-6)


# --- checkpoints -----------------------------------------------------------------------------------------


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, mixture):
    torch.manual_seed(3)
    original = SeedAutoencoder().eval()
    path = tmp_path / "model.pt"
    save_model(original, path, SEED_CONFIG, {"set": "seed", "epochs": 2})
    loaded, metadata = load_model(path)
    assert metadata == {"set": "seed", "epochs": 2}
    assert isinstance(loaded, SeedAutoencoder)
    assert not loaded.training
    with torch.no_grad():
        for before, after in zip(original(mixture), loaded(mixture)):
            assert torch.equal(before, after)
    for key, value in original.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_checkpoint_leaves_no_temporary_files(tmp_path):
    save_model(SeedAutoencoder(), tmp_path / "model.pt", SEED_CONFIG, {})
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_loaded_model_differs_from_a_fresh_one(tmp_path, mixture):
    # guards against load_model silently returning an untrained model
    torch.manual_seed(4)
    original = SeedAutoencoder().eval()
    save_model(original, tmp_path / "m.pt", SEED_CONFIG, {})
    torch.manual_seed(5)
    loaded, _ = load_model(tmp_path / "m.pt")
    fresh = SeedAutoencoder().eval()
    with torch.no_grad():
        assert torch.equal(loaded(mixture)[0], original(mixture)[0])
        assert not torch.equal(fresh(mixture)[0], original(mixture)[0])


@pytest.mark.parametrize("attention", [False, True])
def test_checkpoint_rebuilds_a_consistent_unet(tmp_path, mixture, attention):
    config = model_config("unet", 8, 2, True, "half_difference", attention=attention)
    torch.manual_seed(6)
    original = build_model(**config).eval()
    save_model(original, tmp_path / "u.pt", config, {})
    loaded, _ = load_model(tmp_path / "u.pt")
    assert isinstance(loaded, ConsistentSeparator) and loaded.mix == "half_difference"
    with torch.no_grad():
        assert torch.equal(loaded(mixture)[1], original(mixture)[1])
