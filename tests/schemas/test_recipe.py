import pytest

from schemas.recipe import Recipe, RecipeError, load_recipe


def test_default_recipe_loads_and_version_is_content_hash(tmp_path):
    r = load_recipe()
    assert len(r.version) == 12
    changed = r.model_copy(update={"dedup": r.dedup.model_copy(update={"fp_rate": 0.01})})
    assert changed.version != r.version
    timing = r.model_copy(update={"batch": r.batch.model_copy(update={"size": 7})})
    assert timing.version == r.version  # batching changes timing, not output


def test_unknown_field_and_bad_values_are_clear_errors(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("dedupe: {capacity: 10}\n")
    with pytest.raises(RecipeError, match="dedupe"):
        load_recipe(p)
    p.write_text("dedup: {fp_rate: 2}\n")
    with pytest.raises(RecipeError, match="fp_rate"):
        load_recipe(p)
    p.write_text("tokenizer: {model: missing.model}\n")
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(p)


def test_save_and_reload_keeps_version(tmp_path):
    r = Recipe.model_validate({"curation": [{"op": "toxicity", "threshold": 0.7}]})
    r.save(tmp_path / "r.yaml")
    assert load_recipe(tmp_path / "r.yaml").version == r.version


def test_recipe_file_format_is_versioned(tmp_path):
    from schemas.recipe import RECIPE_SCHEMA_VERSION

    r = Recipe.model_validate({"curation": [{"op": "language"}]})
    r.save(tmp_path / "r.yaml")
    assert f"schema_version: {RECIPE_SCHEMA_VERSION}" in (tmp_path / "r.yaml").read_text()
    newer = tmp_path / "newer.yaml"
    newer.write_text(f"schema_version: {RECIPE_SCHEMA_VERSION + 1}\nname: x\n")
    with pytest.raises(RecipeError, match="schema_version"):
        load_recipe(newer)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(listing)


def test_default_recipes_ship_beside_the_contract():
    from schemas import recipe as contract

    assert contract.DEFAULT_RECIPE.parent == contract.RECIPES_DIR
    assert {p.name for p in contract.RECIPES_DIR.glob("*.yaml")} >= {"default.yaml", "minimal.yaml"}
    assert load_recipe(contract.RECIPES_DIR / "minimal.yaml").curation == []


def test_a_packaged_tokenizer_reference_resolves_from_any_copy_of_the_recipe(tmp_path):
    from pathlib import Path

    from schemas.recipe import DEFAULT_RECIPE

    text = DEFAULT_RECIPE.read_text()
    body = "\n".join("  model: pkg:models/tokenizer/foundry-sp32k-v1.model" if line.startswith("  model:") else line
                     for line in text.splitlines())
    copied = tmp_path / "elsewhere" / "mine.yaml"
    copied.parent.mkdir()
    copied.write_text(body)
    default = load_recipe()
    mine = load_recipe(copied)
    assert Path(mine.tokenizer.model) == Path(default.tokenizer.model) and mine.version == default.version
    for bad, why in (("pkg:no_such_package/x.model", "no installed package"), ("pkg:models", "pkg:<package>/<path>"),
                     ("pkg:models/../x.model", "pkg:<package>/<path>"),
                     ("pkg:models/tokenizer/missing.model", "does not exist")):
        copied.write_text(body.replace("pkg:models/tokenizer/foundry-sp32k-v1.model", bad))
        with pytest.raises(RecipeError, match=why.replace("<", ".").replace(">", ".")):
            load_recipe(copied)


def test_a_saved_recipe_validates_as_a_mapping_too(tmp_path):
    import yaml

    r = Recipe.model_validate({"curation": [{"op": "budget_prune"}]})
    r.save(tmp_path / "r.yaml")
    again = Recipe.model_validate(yaml.safe_load((tmp_path / "r.yaml").read_text()))
    assert again.version == r.version and again.curation == r.curation
