"""The layout holds: no module of `app` imports itself through others (no import circle)."""

from __future__ import annotations

import grimp
import networkx as nx


def _module_graph() -> nx.DiGraph:
    graph = grimp.build_graph("app", exclude_type_checking_imports=True)
    edges = nx.DiGraph()
    for module in graph.modules:
        edges.add_node(module)
        for imported in graph.find_modules_directly_imported_by(module):
            edges.add_edge(module, imported)
    return edges


def test_no_module_of_app_imports_itself_through_others() -> None:
    graph = _module_graph()
    assert len(graph) > 100  # the whole package was read
    circles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert circles == []


def test_the_command_line_and_the_desktop_do_not_depend_on_each_other() -> None:
    graph = grimp.build_graph("app", exclude_type_checking_imports=True)
    assert not graph.chain_exists(importer="app.views", imported="app.cli", as_packages=True)
    assert not graph.chain_exists(importer="app.engine", imported="app.cli", as_packages=True)
