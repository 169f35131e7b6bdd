"""Block swap on the CPU: the loss and the adapter's gradients equal those without it, and at most one
swapped block's weights are on the device at a time (the swap counts them; on a GPU they move)."""
import pytest
import torch

pytest.importorskip("diffusers")
from vidiff.models.external import load_open_backbone  # noqa: E402
from vidiff.models.external.random_wan import save_random_wan  # noqa: E402
from vidiff.models.lora import add_lora  # noqa: E402
from vidiff.training.block_swap import place  # noqa: E402


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    return save_random_wan(tmp_path_factory.mktemp("wan") / "wan-tiny")


def loss_and_grads(backbone):
    g = torch.Generator().manual_seed(0)
    z, context = torch.randn(2, 4, 3, 4, 4, generator=g), torch.randn(2, 7, 16, generator=g)
    loss = backbone(z, torch.tensor([300.0, 700.0]), context).square().mean()
    backbone.zero_grad(set_to_none=True)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in backbone.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("checkpointing", [True, False])
def test_block_swap_gives_the_same_loss_and_gradients_with_one_block_on_the_device(wan_dir, checkpointing):
    backbone = load_open_backbone(wan_dir)
    add_lora(backbone.transformer, "default", 2, 2.0, ["*.attn1.to_q", "*.ffn.net.2"])
    for m in backbone.modules():
        if hasattr(m, "lora"):
            torch.nn.init.normal_(m.lora["default"].up.weight, std=0.1)
    if checkpointing:
        backbone.transformer.enable_gradient_checkpointing()
    backbone.train()
    reference = loss_and_grads(backbone)
    swap = place(backbone, backbone.shard_blocks(), 2, torch.device("cpu"))
    loss, grads = loss_and_grads(backbone)
    assert loss == reference[0] and grads.keys() == reference[1].keys()
    assert all(torch.equal(grads[n], reference[1][n]) for n in grads)
    assert swap.peak == 1 and len(swap.on_device) <= 1        # one block at a time
    assert swap.moves >= (4 if checkpointing else 2) * 2 - 1     # in and out again for the recomputation
