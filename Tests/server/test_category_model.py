"""The category model over a real socket (issue 19): VPREDICT TOP and HISTORY, CATEGORY AUTO
P and PREDICT, VINFO's predictor lines, the model kept across a restart, and bad input."""
import random
import time

import pytest
import redis

from conftest import as_dict

CLASSES = ["boots", "hats", "bags", "belts"]
DIM = 8


def point(rng, label, spread=1.0):
    return [(3.0 if j == label else 0.0) + rng.gauss(0, spread) for j in range(DIM)]


def load(r, per_class=60, spread=1.0):
    """Four overlapping Gaussian classes, 240 items (the model needs 200 with a category)."""
    rng = random.Random(7)
    pipe = r.pipeline(transaction=False)
    for i in range(per_class * len(CLASSES)):
        label = i % len(CLASSES)
        pipe.execute_command("VADD", "shop", "VALUES", DIM, *point(rng, label, spread), f"{CLASSES[label]}{i}",
                             "SETATTR", f'{{"category":"{CLASSES[label]}"}}')
    pipe.execute()


def info(r):
    return as_dict(r.execute_command("VINFO", "shop"))


def wait_for_model(r, timeout=60):
    """The first VPREDICT asks for a fit in the background; VINFO says when it is done."""
    r.execute_command("VPREDICT", "shop", "VALUES", DIM, *([1.0] + [0.0] * (DIM - 1)))
    deadline = time.time() + timeout
    while time.time() < deadline:
        i = info(r)
        if float(i["category-accuracy"]) >= 0 and i["category-model-training"] == 0:
            return i
        time.sleep(0.05)
    raise AssertionError(f"no category model after {timeout} s: {info(r)}")


def test_vinfo_reports_the_fallback_then_the_trained_predictor(r):
    for i in range(10):
        r.execute_command("VADD", "shop", "VALUES", DIM, *([float(i)] * DIM), f"x{i}", "SETATTR", '{"category":"a"}')
    before = info(r)
    assert before["category-predictor"] == "vote" and "first VPREDICT" in before["category-predictor-note"]
    r.execute_command("VPREDICT", "shop", "ELE", "x1")
    deadline = time.time() + 30
    while "a model needs 200" not in info(r)["category-predictor-note"]:
        assert time.time() < deadline, info(r)
        time.sleep(0.05)
    assert info(r)["category-predictor"] == "vote"

    r.execute_command("DEL", "shop")
    load(r, spread=1.5)
    i = wait_for_model(r)
    assert i["category-predictor"] in ("blend", "model", "vote")
    assert i["category-classes"] == 4 and i["category-labelled-items"] == 240
    assert 0.7 <= float(i["category-accuracy"]) <= 1
    assert float(i["category-accuracy"]) >= float(i["category-accuracy-vote"])


def test_vpredict_top_returns_probabilities_and_count_still_means_neighbours(r):
    load(r)
    wait_for_model(r)
    q = [0.0, 3.0] + [0.0] * (DIM - 2)
    top = r.execute_command("VPREDICT", "shop", "VALUES", DIM, *q, "TOP", 3)
    assert len(top) == 6 and top[0] == "hats"
    probabilities = [float(p) for p in top[1::2]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6
    # Without TOP: [category, probability], as before; COUNT is the vote's neighbours.
    category, p = r.execute_command("VPREDICT", "shop", "VALUES", DIM, *q, "COUNT", 5)
    assert category == "hats" and float(p) == pytest.approx(probabilities[0], abs=0.3)
    assert r.execute_command("VPREDICT", "nokey", "VALUES", DIM, *q, "TOP", 2) == []


def test_vpredict_history_finds_a_users_known_interests(r):
    load(r)
    wait_for_model(r)
    rng = random.Random(3)
    members = {c: [f"{c}{i}" for i in range(k, 240, 4)] for k, c in enumerate(CLASSES)}
    for _ in range(5):
        interests = rng.sample(CLASSES, 2)
        bought = rng.sample(members[interests[0]], 4) + rng.sample(members[interests[1]], 4)
        top = r.execute_command("VPREDICT", "shop", "HISTORY", len(bought), *bought, "TOP", 2)
        assert set(top[0::2]) == set(interests), (interests, top)
    # WEIGHTS: an interest weighted up comes first.
    bought = members["bags"][:3] + members["belts"][:3]
    top = r.execute_command("VPREDICT", "shop", "HISTORY", 6, *bought, "WEIGHTS", 1, 1, 1, 4, 4, 4, "TOP", 2)
    assert top[0] == "belts" and top[2] == "bags"


def test_category_auto_uses_a_stored_items_own_category_unless_told_to_predict(r):
    load(r)
    # A hat lying among the boots: its own category unless PREDICT.
    r.execute_command("VADD", "shop", "VALUES", DIM, *([3.0] + [0.0] * (DIM - 1)), "odd-hat", "SETATTR", '{"category":"hats"}')
    own = r.execute_command("VSIM", "shop", "ELE", "odd-hat", "CATEGORY", "AUTO", "COUNT", 5)
    assert own[0] == "odd-hat" and all(h.startswith("hat") or h == "odd-hat" for h in own)
    predicted = r.execute_command("VSIM", "shop", "ELE", "odd-hat", "CATEGORY", "AUTO", "PREDICT", "COUNT", 5)
    assert all(h.startswith("boots") for h in predicted)


def test_cascade_similar_in_uses_the_predicted_category_of_an_item_without_one(r):
    load(r)
    # A new sticker in the bags' cluster, stored with no category at all.
    r.execute_command("VADD", "shop", "VALUES", DIM, *([0.0, 0.0, 3.0] + [0.0] * (DIM - 3)), "new-sticker")
    hits = r.execute_command("VRECOMMEND", "shop", "new-sticker", "SIMILAR", "IN", "category", "COUNT", 5)
    assert len(hits) == 10, hits  # element, stage: five times
    keys, stages = hits[0::2], hits[1::2]
    assert all(k.startswith("bags") for k in keys), keys
    assert set(stages) == {"similar:category:predicted"}
    # SAME is an exact match on a stored value: an item without one skips the stage.
    assert r.execute_command("VRECOMMEND", "shop", "new-sticker", "SAME", "category", "COUNT", 5) == []
    # An item with its own category keeps it, and says nothing about prediction.
    own = r.execute_command("VRECOMMEND", "shop", "hats1", "SIMILAR", "IN", "category", "COUNT", 3)
    assert set(own[1::2]) == {"similar:category"} and all(k.startswith("hats") for k in own[0::2])


def test_new_items_job_restricted_to_the_category_predicts_a_missing_one(r):
    load(r)
    first_new = info(r)["hnsw-max-node-uid"]
    # A new bag without a category, and a new item stored as a hat although it lies among the
    # boots: the stored category is kept, a missing one is predicted.
    r.execute_command("VADD", "shop", "VALUES", DIM, *([0.0, 0.0, 3.0] + [0.0] * (DIM - 3)), "new-bag")
    r.execute_command("VADD", "shop", "VALUES", DIM, *([3.0] + [0.0] * (DIM - 1)), "new-hat", "SETATTR", '{"category":"hats"}')
    report = as_dict(r.execute_command("VNEWNEIGHBORS", "shop", "SINCE", "ID", first_new, "COUNT", 5, "IN", "category"))
    assert report["new-items"] == 2 and report["within"] == "category" and report["predicted"] == 1
    bag = r.execute_command("VNEIGHBORS", "shop", "new-bag")
    assert len(bag) == 5 and all(k.startswith("bags") for k in bag), bag
    hat = r.execute_command("VNEIGHBORS", "shop", "new-hat")
    assert len(hat) == 5 and all(k.startswith("hats") for k in hat), hat
    # Unrestricted, the hat's nearest are boots: the restriction did the work above.
    r.execute_command("VNEWNEIGHBORS", "shop", "SINCE", "ID", first_new, "COUNT", 5)
    assert all(k.startswith("boots") for k in r.execute_command("VNEIGHBORS", "shop", "new-hat"))
    with pytest.raises(redis.ResponseError, match="not an indexed attribute"):
        r.execute_command("VNEWNEIGHBORS", "shop", "SINCE", "ID", first_new, "IN", "colour")


def test_category_auto_top_p_returns_k_from_the_likely_categories(r):
    load(r)
    wait_for_model(r)
    # Between boots and hats: both likely, so P 0.9 spans them (and k come back).
    q = [1.5, 1.5] + [0.0] * (DIM - 2)
    hits = r.execute_command("VSIM", "shop", "VALUES", DIM, *q, "CATEGORY", "AUTO", "P", 0.9, "COUNT", 20)
    assert len(hits) == 20 and len(set(hits)) == 20
    single = r.execute_command("VSIM", "shop", "VALUES", DIM, *q, "CATEGORY", "AUTO", "P", 1, "COUNT", 20)
    assert len(single) == 20
    assert {h.rstrip("0123456789") for h in hits} >= {"boots", "hats"}


def test_the_model_survives_a_restart(server, r):
    load(r)
    before = wait_for_model(r)
    q = [0.0, 0.0, 3.0] + [0.0] * (DIM - 3)
    answer = r.execute_command("VPREDICT", "shop", "VALUES", DIM, *q, "TOP", 4)
    server.restart()
    r2 = server.client()
    assert r2.execute_command("VPREDICT", "shop", "VALUES", DIM, *q, "TOP", 4) == answer
    after = info(r2)
    assert after["category-model-training"] == 0  # no retrain: the stored model is current
    assert after["category-accuracy"] == before["category-accuracy"]
    assert after["category-model-seconds"] == before["category-model-seconds"]


@pytest.mark.parametrize("args, message", [
    (["CATEGORY", "AUTO", "P", "0"], "P must be a probability above 0 and at most 1"),
    (["CATEGORY", "AUTO", "P", "1.5"], "P must be a probability above 0 and at most 1"),
    (["CATEGORY", "AUTO", "P", "x"], "P must be a probability above 0 and at most 1"),
    (["CATEGORY", "AUTO", "P"], "P must be a probability above 0 and at most 1"),
    (["P", "0.9"], "P belongs to CATEGORY AUTO"),
    (["CATEGORY", "boots", "PREDICT"], "PREDICT belongs to CATEGORY AUTO"),
])
def test_bad_vsim_category_options(r, args, message):
    load(r, per_class=2)
    with pytest.raises(redis.ResponseError, match=message):
        r.execute_command("VSIM", "shop", "VALUES", DIM, *([1.0] * DIM), *args)


@pytest.mark.parametrize("args, message", [
    (["TOP", "0"], "TOP \\(the number of categories\\) must be a positive integer"),
    (["TOP", "many"], "TOP \\(the number of categories\\) must be a positive integer"),
    (["COUNT", "-1"], "COUNT \\(the neighbours that vote\\) must be a positive integer"),
    (["COUNT"], "COUNT \\(the neighbours that vote\\) must be a positive integer"),
    (["COUNT", "99999999"], "must be at most"),
    (["SOMETIMES", "1"], "unknown VPREDICT option 'SOMETIMES'"),
])
def test_bad_vpredict_options(r, args, message):
    load(r, per_class=2)
    with pytest.raises(redis.ResponseError, match=message):
        r.execute_command("VPREDICT", "shop", "VALUES", DIM, *([1.0] * DIM), *args)
    # Nothing changed: the set answers as before.
    assert r.execute_command("VCARD", "shop") == 8


def test_bad_vpredict_history(r):
    load(r, per_class=2)
    with pytest.raises(redis.ResponseError, match="names 3 elements but has 2"):
        r.execute_command("VPREDICT", "shop", "HISTORY", 3, "boots0", "hats1")
    with pytest.raises(redis.ResponseError, match="WEIGHTS has 1 values for 2 elements|WEIGHTS needs one weight per element"):
        r.execute_command("VPREDICT", "shop", "HISTORY", 2, "boots0", "hats1", "WEIGHTS", 1)
    with pytest.raises(redis.ResponseError, match="no element named 'ghost'"):
        r.execute_command("VPREDICT", "shop", "HISTORY", 2, "boots0", "ghost")
    with pytest.raises(redis.ResponseError, match="unknown VPREDICT option 'ATTENTION'"):
        r.execute_command("VPREDICT", "shop", "HISTORY", 1, "boots0", "ATTENTION", "VALUES", 1, 1)
