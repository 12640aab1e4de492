"""Depth and role from variable names: the repeated blocks of a deep model.

Transformers, ResNets and every deep stack repeat one block: their users
read gradients by depth (which block) and role (query kernel, MLP output,
norm scale). The names say both: ``transformer_layer_7/self_attention/
query/kernel``, ``conv4_block3_2_conv/kernel``, ``h.7.attn.c_attn.weight``.
`block_structure` finds the repetition from the names alone, as a pure
function of them.

How: each number in a name can end a block prefix (``transformer_layer_7``,
``conv4_block3``). Cutting every name after its k-th number gives, per k,
a *family* (the prefix with those k numbers abstracted, ``conv#_block#``),
an index (the k numbers) and a remainder (``_2_conv/kernel``). A family is
a repeated structure when the same remainders recur across its indices.
Its gain is what the table of blocks × remainders saves over listing the
names: variables − (blocks + distinct remainders). That prefers the blocks
a person would name: cutting ResNet's ``conv4_block3_2_conv`` after the
third number makes one block per convolution (many blocks, few roles),
after the first one block per stage (few blocks, many roles); the cut
after ``block3`` saves the most. Each name takes the family of highest
gain among its cuts; a family left with fewer than two blocks is dropped.
Depth is the rank of a block's index within its family, in numeric order,
and role the name with the index abstracted. Names outside every
repetition (embedding, head, final norm) have no depth and are their own
role. With Keras's automatic names a stack of ``dense``, ``dense_1``, … is
one family whose depth is the layer's position (``dense`` is index 0).
"""

import dataclasses
import re

# A block number, with the letter EfficientNet puts after it (``block2a``).
NUMBER = re.compile(r"(\d+)([a-z]?)(?![a-z])")
# Where an abstracted index goes in a family or role.
MARK = "#"
# A family explains less than this many variables beyond one block: not a
# repetition worth a depth axis.
MIN_GAIN = 2


@dataclasses.dataclass(frozen=True)
class Place:
    """Where a variable sits in the repeated structure.

    Attributes:
      depth: the 0-based rank of its block in its family, numeric order
        (None: outside every repetition).
      role: the name with the block index abstracted
        (``transformer_layer_#/self_attention/query/kernel``), or the name
        itself outside every repetition.
      family: the block prefix with its index abstracted
        (``transformer_layer_#``), or None.
      index: the numbers of the block prefix, each with its letter, e.g.
        ``((4, ""), (3, ""))`` for ``conv4_block3``, ``((2, "a"),)`` for
        ``block2a``, or None.
    """

    depth: object
    role: str
    family: object = None
    index: object = None


def _cuts(name):
    """``[(k, family, index, remainder)]`` for every cut after the k-th
    number of ``name``."""
    matches = list(NUMBER.finditer(name))
    cuts = []
    for k in range(1, len(matches) + 1):
        end = matches[k - 1].end()
        family, last = [], 0
        for match in matches[:k]:
            family.append(name[last:match.start()])
            family.append(MARK)
            last = match.end()
        family = "".join(family)
        index = tuple((int(match.group(1)), match.group(2))
                      for match in matches[:k])
        cuts.append((k, family, index, name[end:]))
    return cuts


def _unnumbered(name):
    """``(family, index, remainder)`` of a name whose first segment may be
    the unnumbered first member of a ``<prefix>_#`` family (Keras names the
    first Dense layer ``dense`` and the next ``dense_1``)."""
    head, slash, rest = name.partition("/")
    if NUMBER.search(head):
        return None
    return head + "_" + MARK, ((0, ""),), slash + rest


def block_structure(names):
    """The depth and role of every variable, from the names alone.

    Args:
      names: the variable names (paths), in model order.

    Returns:
      ``[Place]`` per name, in order; ``None`` when no repeated structure
      is found (the caller shows its per-variable views then).
    """
    names = [str(name) for name in names]
    candidates = {}  # (k, family) -> {index: [remainders]}
    per_name = []
    for name in names:
        cuts = _cuts(name)
        unnumbered = _unnumbered(name)
        if unnumbered is not None:
            family, index, rest = unnumbered
            cuts.append((1, family, index, rest))
        per_name.append(cuts)
        for k, family, index, rest in cuts:
            candidates.setdefault((k, family), {}).setdefault(
                index, []).append(rest)
    gains = {}
    for key, blocks in candidates.items():
        if len(blocks) < 2:
            continue
        count = sum(len(rests) for rests in blocks.values())
        distinct = len({rest for rests in blocks.values() for rest in rests})
        gain = count - distinct - len(blocks)
        if gain >= MIN_GAIN:
            gains[key] = gain
    if not gains:
        return None
    chosen = []
    for name, cuts in zip(names, per_name):
        best = None
        for k, family, index, rest in cuts:
            gain = gains.get((k, family))
            if gain is not None and (best is None or gain > best[0]):
                best = (gain, family, index, rest)
        chosen.append(best)
    ranks = {}
    for best in chosen:
        if best is not None:
            ranks.setdefault(best[1], set()).add(best[2])
    ranks = {family: {index: rank for rank, index in enumerate(sorted(found))}
             for family, found in ranks.items() if len(found) >= 2}
    chosen = [best if best is not None and best[1] in ranks else None
              for best in chosen]
    if not any(chosen):
        return None
    places = []
    for name, best in zip(names, chosen):
        if best is None:
            places.append(Place(None, name))
            continue
        _, family, index, rest = best
        places.append(Place(ranks[family][index], family + rest, family,
                            index))
    return places
