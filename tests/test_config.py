import pytest
import yaml

from rlplast.agents.ppo import PPOConfig
from rlplast.config import (
    CONFIG_DIR,
    Config,
    ConfigError,
    apply_override,
    available,
    deep_merge,
    load_config,
    parse_value,
    validate,
)


def test_protocol_defaults():
    cfg = load_config("slippery_ant", "ppo")
    a = cfg.agent
    assert (a.hidden, a.activation, a.steps_per_update, a.epochs, a.minibatches) == ([256, 256], "relu", 2048, 10, 16)
    assert (a.clip, a.gamma, a.gae_lambda, a.value_coef, a.entropy_coef) == (0.2, 0.99, 0.95, 1.0, 0.0)
    assert a.max_grad_norm is None and a.normalize_advantages and a.bootstrap_truncated
    o = cfg.optimizer
    assert (o.kind, o.lr, o.betas, o.eps, o.weight_decay) == ("adam", 1e-4, (0.9, 0.999), 1e-8, 0.0)
    sched = cfg.env.friction.schedule
    assert (sched.kind, sched.low, sched.high, sched.every) == ("piecewise", 0.02, 2.0, 2_000_000)
    assert cfg.env.friction.mode == "all" and cfg.env.friction.apply == "episode_end"
    assert cfg.env.kwargs["include_cfrc_ext_in_observation"] is False
    assert cfg.run.steps == 20_000_000 and load_config("ant", "ppo").run.steps == 50_000_000
    assert load_config("ant", "ppo").env.friction.schedule.kind == "constant"


def test_methods_differ_only_as_the_protocol_says():
    tuned, l2 = load_config("ant", "ppo_tuned"), load_config("ant", "ppo_l2")
    assert tuned.optimizer.betas == (0.99, 0.99) and tuned.optimizer.weight_decay == 0
    assert l2.optimizer.betas == (0.99, 0.99) and l2.optimizer.weight_decay == 1e-3
    base = load_config("ant", "ppo").model_dump(exclude={"method", "optimizer"})
    assert tuned.model_dump(exclude={"method", "optimizer"}) == base
    # method files hold only what differs from the defaults
    for name in ("ppo", "ppo_tuned", "ppo_l2"):
        data = yaml.safe_load((CONFIG_DIR / "methods" / f"{name}.yaml").read_text()) or {}
        assert set(data) <= {"optimizer", "plugins", "agent"}, name
    assert {"ant", "slippery_ant"} <= set(available("tasks"))


def test_overrides_parse_numbers_steps_lists_and_null():
    cfg = load_config(
        "ant",
        "ppo",
        [
            "optimizer.lr=3e-4",
            "agent.hidden=[64, 32]",
            "agent.max_grad_norm=0.5",
            "run.checkpoint_every=250k",
            "env.friction.schedule={kind: cycle, values: [0.5, 1.5], every: 1000}",
            "env.kwargs.reset_noise_scale=0.2",
        ],
    )
    assert cfg.optimizer.lr == 3e-4
    assert cfg.agent.hidden == [64, 32]
    assert cfg.agent.max_grad_norm == 0.5
    assert cfg.run.checkpoint_every == 250_000
    assert cfg.env.friction.schedule.values == [0.5, 1.5]
    assert cfg.env.kwargs == {"include_cfrc_ext_in_observation": False, "reset_noise_scale": 0.2}
    assert load_config("ant", "ppo", ["agent.max_grad_norm=null"]).agent.max_grad_norm is None


@pytest.mark.parametrize(
    ("text", "value"),
    [("3e-4", 3e-4), ("1e6", 1e6), ("5", 5), ("true", True), ("null", None), ("2M", 2_000_000), ("Ant-v5", "Ant-v5")],
)
def test_parse_value(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("agent.lr=3e-4", r"agent\.lr: unknown key \(the learning rate is optimizer\.lr\); allowed: hidden, "),
        ("agent.clip=0", r"agent\.clip: Input should be greater than 0"),
        ("agent.minibatches=7", r"agent\.steps_per_update \(2048\) must be a multiple of agent\.minibatches \(7\)"),
        ("env.envs_per_run=3", r"must be a multiple of env\.envs_per_run \(3\)"),
        ("env.friction.mode=ice", r"env\.friction\.mode: Input should be 'all' or 'floor'"),
        ("env.friction.schedule.every=0", r"env\.friction\.schedule\.every: Input should be greater"),
        ("env.friction.schedule.bogus=1", r"env\.friction\.schedule\.bogus: unknown key; allowed: kind, low, high"),
        ("bogus.x=1", r"bogus: unknown key; allowed: task, method, env, agent"),
        ("agent.hidden=[64, x]", r"agent\.hidden\.1: Input should be a valid integer"),
        ("agent.epochs", "expected key=value"),
        ("agent.epochs.x=1", r"agent\.epochs: Input should be a valid integer"),
        ("env.id.x=1", r"env\.id is a value, not a section"),
        ("optimizer.lr=.inf", r"optimizer\.lr: inf is not a finite number"),
        ("agent.gamma=nan", r"agent\.gamma: .*nan"),
        ("method=ppo_cbp", r"override 'method': the method is a name.*choose the method itself with --method"),
        ("task=ant", r"override 'task'.*--task"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("slippery_ant", "ppo", [override])


def test_unknown_task_and_method_list_the_available_ones():
    with pytest.raises(ConfigError, match="unknown task 'nope'; available: ant, halfcheetah, hopper"):
        load_config("nope", "ppo")
    with pytest.raises(ConfigError, match=r"unknown method 'nope'; available: .*ppo_tuned"):
        load_config("ant", "nope")


def test_a_run_is_never_labelled_with_another_envs_task(tmp_path):
    # the run carries its task's name, so swapping the env by override is refused in one line
    with pytest.raises(ConfigError, match=r"^override 'env.id': task 'slippery_ant' trains Ant-v5, .*--task$"):
        load_config("slippery_ant", "ppo", ["env.id=InvertedPendulum-v5", "env.kwargs={}"])
    (tmp_path / "mine.yaml").write_text("env:\n  id: Hopper-v5\n")
    with pytest.raises(ConfigError, match=r"task 'mine' trains Hopper-v5, .* choose a task of Ant-v5: ant, slippery"):
        load_config(str(tmp_path / "mine.yaml"), "ppo", ["env.id=Ant-v5"])
    assert load_config("ant", "ppo", ["env.id=Ant-v5"]).task == "ant"  # the same id is no swap
    (tmp_path / "pendulum.yaml").write_text("env:\n  id: InvertedPendulum-v5\n")
    cfg = load_config(str(tmp_path / "pendulum.yaml"), "ppo")
    assert (cfg.task, cfg.env.id) == ("pendulum", "InvertedPendulum-v5")


def test_yaml_files_given_by_path_and_bad_yaml(tmp_path):
    method = tmp_path / "mine.yaml"
    method.write_text("agent:\n  epochs: 4\n")
    cfg = load_config("ant", str(method))
    assert cfg.method == "mine" and cfg.agent.epochs == 4
    method.write_text("agent: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("ant", str(method))
    method.write_text("agent:\n  epochz: 4\n")
    with pytest.raises(ConfigError, match=r"agent\.epochz: unknown key"):
        load_config("ant", str(method))


def test_resolved_yaml_round_trips():
    cfg = load_config("slippery_ant", "ppo_l2", ["plugins=[{kind: cbp}]", "agent.epochs=3"])
    assert validate(yaml.safe_load(cfg.to_yaml())) == cfg
    assert "lr: 0.0001" in cfg.to_yaml()  # defaults are written out


def test_training_dict_ignores_names_and_run_settings():
    a = load_config("ant", "ppo")
    b = load_config("ant", "ppo", ["run.checkpoint_every=1000", "run.steps=5M"]).model_copy(update={"method": "x"})
    assert a.training_dict() == b.training_dict()
    assert a.training_dict() != load_config("ant", "ppo", ["agent.clip=0.3"]).training_dict()


def test_deep_merge_and_apply_override_by_hand():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    top = {"a": {"c": [3]}, "e": 2}
    assert deep_merge(base, top) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # inputs untouched
    data = {"plugins": [{"kind": "cbp"}]}
    apply_override(data, "plugins.0.replacement_rate=1e-3")
    assert data == {"plugins": [{"kind": "cbp", "replacement_rate": 1e-3}]}
    with pytest.raises(ConfigError, match="not an index"):
        apply_override(data, "plugins.3.x=1")


def test_config_defaults_are_valid_without_files():
    assert Config().agent == PPOConfig()
