"""Depth and role from variable names (`analysis.structure`), on the names
of Keras's own applications (built with random weights) and of common
transformer code."""

import collections

import keras
import pytest

from tb_gradients.analysis import structure


def _names(model):
    return [variable.path for variable in model.trainable_variables]


def _by_name(names):
    places = structure.block_structure(names)
    assert places is not None
    return dict(zip(names, places))


def test_resnet50_blocks_are_its_sixteen_bottlenecks():
    names = _names(keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3), classes=10))
    places = _by_name(names)
    place = places["conv4_block3_2_conv/kernel"]
    assert place.role == "conv#_block#_2_conv/kernel"
    assert place.family == "conv#_block#"
    # blocks: conv2 × 3, conv3 × 4, conv4 × 6, conv5 × 3, in that order
    assert place.depth == 3 + 4 + 2
    assert places["conv5_block3_3_bn/beta"].depth == 15
    assert places["conv2_block1_0_conv/kernel"].depth == 0
    for outside in ("conv1_conv/kernel", "predictions/bias"):
        assert places[outside].depth is None
        assert places[outside].role == outside
    # every block repeats the same roles (the first of a stage adds the
    # shortcut's _0_conv and _0_bn)
    roles = collections.defaultdict(set)
    for place in places.values():
        if place.depth is not None:
            roles[place.depth].add(place.role)
    assert len(roles) == 16
    assert roles[1] <= roles[0] and roles[0] - roles[1] == {
        "conv#_block#_0_conv/kernel", "conv#_block#_0_conv/bias",
        "conv#_block#_0_bn/gamma", "conv#_block#_0_bn/beta"}


def test_mobilenet_and_efficientnet_blocks():
    mobilenet = _by_name(_names(keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), classes=10)))
    assert mobilenet["block_2_expand/kernel"].role == "block_#_expand/kernel"
    assert mobilenet["block_16_project/kernel"].depth == 15
    assert mobilenet["Conv1/kernel"].depth is None
    efficientnet = _by_name(_names(keras.applications.EfficientNetB0(
        weights=None, input_shape=(32, 32, 3), classes=10)))
    # block2a, block2b, … : the letter is part of the block's index
    place = efficientnet["block2b_project_conv/kernel"]
    assert place.role == "block#_project_conv/kernel"
    assert place.index == ((2, "b"),)
    assert efficientnet["block2a_project_conv/kernel"].depth + 1 == \
        place.depth
    assert efficientnet["top_conv/kernel"].depth is None


TRANSFORMER_ROLES = ("self_attention/query/kernel", "self_attention/key/kernel",
                     "self_attention/value/kernel",
                     "self_attention/attention_output/kernel",
                     "self_attention_layer_norm/gamma",
                     "feedforward_intermediate_dense/kernel",
                     "feedforward_output_dense/kernel",
                     "feedforward_layer_norm/gamma")


@pytest.mark.parametrize("block, roles, head, tail", [
    # keras_hub's TransformerEncoder stack
    ("transformer_layer_{}/", TRANSFORMER_ROLES,
     ["token_embedding/embeddings", "position_embedding/embeddings"],
     ["final_norm/gamma"]),
    # PyTorch GPT-2 (state_dict keys)
    ("h.{}.", ("ln_1.weight", "attn.c_attn.weight", "attn.c_proj.weight",
               "ln_2.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"),
     ["wte.weight", "wpe.weight"], ["ln_f.weight"]),
    # Hugging Face BERT in TensorFlow
    ("bert/encoder/layer_._{}/", ("attention/self/query/kernel",
                                 "attention/self/key/kernel",
                                 "attention/output/dense/kernel",
                                 "intermediate/dense/kernel",
                                 "output/dense/kernel",
                                 "output/LayerNorm/gamma"),
     ["bert/embeddings/word_embeddings/weight"], ["classifier/kernel"]),
])
def test_transformer_blocks(block, roles, head, tail):
    depth = 24
    names = head + [block.format(i) + role for i in range(depth)
                    for role in roles] + tail
    places = _by_name(names)
    for i in (0, 7, depth - 1):
        for role in roles:
            place = places[block.format(i) + role]
            assert place.depth == i
            assert place.role == block.format(structure.MARK) + role
    for name in head + tail:
        assert places[name].depth is None and places[name].role == name


def test_keras_automatic_names_count_the_unnumbered_first():
    names = ["dense/kernel", "dense/bias"] + [
        f"dense_{i}/{part}" for i in range(1, 6) for part in ("kernel",
                                                              "bias")]
    places = _by_name(names)
    assert [places[f"dense{suffix}/kernel"].depth
            for suffix in ("", "_1", "_5")] == [0, 1, 5]
    assert places["dense_3/bias"].role == "dense_#/bias"


@pytest.mark.parametrize("names", [
    ["encoder/kernel", "decoder/kernel", "head/bias"],
    ["dense/kernel", "dense/bias", "out/kernel"],
    ["conv1/kernel", "conv2/kernel"],  # two layers are not a repetition
    [],
])
def test_no_structure_without_a_repetition(names):
    assert structure.block_structure(names) is None
