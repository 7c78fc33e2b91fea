"""Model surgery: read, replace, insert, wrap, remove and freeze nodes by path or
selector, capture intermediate outputs, and `transfer` weights between architectures
by leaf name and shape (with a `TransferReport`).

Conventions shared by every function here:

- **Paths and selectors.** A path is `("a", "b")` or `"a/b"`. Wherever a path is
  accepted, a selector is too: a glob (`"blocks/*/attn"`, `*` one name, `**` any
  depth), a list of paths or globs, `select(tree, kind=hax.nn.Linear, ...)`, or a
  predicate `(node, path) -> bool`. `paths(tree, selector)` lists the matches (empty
  when none); an edit whose selector matches nothing, or whose path does not exist,
  raises `KeyError` naming it and the paths nearby.
- **One selection.** Every edit resolves its selector to a `Selection` (the matched
  paths, in tree order) and rewrites the tree with one `Selection.set(tree, fn,
  order=...)`: `"outermost"`, where a match inside another goes with it (`replace`,
  `freeze`), or `"deepest_first"`, where every match is edited, children before
  parents (`insert_*`, `wrap`; `remove` edits the parents of the outermost matches).
  `Selection.get(tree)` reads the nodes. Use them for edits of your own.
- **Functional.** Every edit returns a new tree and never mutates its input;
  unchanged nodes and arrays are shared. Results are validated (`hax.validate`).
- **Configs.** Edits that add modules (`replace`, `insert_before`, `insert_after`)
  take the new module as `(tree, config)` or a bare tree, and the host's config as
  `config=`, and return a module `(new_tree, merged_config)`. The others (`remove`,
  `wrap`, `freeze`, `unfreeze`) return a tree.
- **Stable paths.** Only the nodes an edit names change paths: `insert_after(tree,
  "fc", m)` moves the original to `"fc/0"` (and `m` is at `"fc/1"`); `remove` keeps
  the other children's names, gaps included.

**Weight tying** (an embedding shared with the output head): keep one leaf and let
the parent's apply read it, rather than two nodes holding copies:

```python
@hax.organized_apply
def lm_apply(org, tokens):
    h = org.body(org.embed(tokens))
    return h @ org.embed.tree["params"]["weight"].T  # the head reads the embedding

@hax.organized_init(lm_apply)
def LM(org, vocab, dim):
    org.embed = hax.nn.Embedding(vocab, dim)
    org.body = hax.nn.Sequential(hax.nn.Linear(dim, dim), hax.nn.GELU())
```

Gradients from both uses add up in `"embed/params/weight"`; checkpoints, `freeze`
and every edit outside `"embed"` see a single param.
"""

from .._report import TransferEntry as TransferEntry, TransferReport as TransferReport
from ._chain import chain_apply as chain_apply
from ._edit import (
    NewModule as NewModule,
    get as get,
    insert_after as insert_after,
    insert_before as insert_before,
    remove as remove,
    replace as replace,
    wrap as wrap,
)
from ._freeze import (
    FROZEN as FROZEN,
    freeze as freeze,
    trainable_mask as trainable_mask,
    unfreeze as unfreeze,
)
from ._intermediates import intermediates as intermediates
from ._select import (
    Predicate as Predicate,
    Selector as Selector,
    paths as paths,
    select as select,
)
from ._selection import NodeFn as NodeFn, Selection as Selection
from ._tie import TIED as TIED, Tied as Tied, tie as tie
from ._transfer import transfer as transfer
from ._wrap import WrapFn as WrapFn, Wrapped as Wrapped
