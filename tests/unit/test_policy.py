"""The register as code: good and broken registers, and the lint against the notice."""
import shutil
from pathlib import Path

import pytest
import yaml

from vendorprivacy.cli import main as cli
from vendorprivacy.policy import POLICY_DIR, PolicyError, lint, load_notice, load_register


@pytest.fixture
def policy(tmp_path) -> Path:
    shutil.copytree(POLICY_DIR, tmp_path / "policy")
    return tmp_path / "policy"


def edit(policy: Path, vendor: str, change) -> None:
    path = policy / "vendors" / f"{vendor}.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def field(data, feed_idx, name):
    return next(f for f in data["feeds"][feed_idx]["fields"] if f["name"] == name)


def test_shipped_register_is_valid_and_clean():
    register, notice = load_register(), load_notice()
    assert lint(register, notice) == []
    kinds = {v.transport.kind for v in register.vendors.values()}
    assert kinds == {"sftp", "s3", "https"}
    assert len(register.vendors) >= 7


def test_register_covers_every_recipient_category_that_receives_customer_records():
    register, notice = load_register(), load_notice()
    served = {v.recipient_category for v in register.vendors.values()}
    needed = {k for k, rc in notice.recipient_categories.items() if rc.channel == "customer_records"}
    assert needed <= served


def test_two_advertising_partners_with_different_identifier_rules():
    register = load_register()
    ads = [v for v in register.vendors.values() if v.recipient_category == "interest_based_advertising_partners"]
    assert len(ads) == 2
    phone_rules = {f.normaliser for v in ads for f in v.feeds[0].fields if f.category == "user.contact.phone_number"}
    assert phone_rules == {"phone_e164", "phone_digits"}


def test_misspelt_category_is_named_with_file_vendor_feed_and_field(policy):
    edit(policy, "adgrid", lambda d: field(d, 0, "email_sha256").update(category="user.contact.emial"))
    with pytest.raises(PolicyError) as e:
        load_register(policy)
    msg = str(e.value)
    assert "adgrid.yaml" in msg and "feed 'adgrid_customer_match'" in msg and "field 'email_sha256'" in msg
    assert "did you mean 'user.contact.email'" in msg


def test_misspelt_key_and_unknown_use_are_rejected(policy):
    edit(policy, "mailwave", lambda d: d.update(purpose="marketing.comunications.email"))
    edit(policy, "payflow", lambda d: d["feeds"][0].update(eligibilty=["min_age_13"]))
    with pytest.raises(PolicyError) as e:
        load_register(policy)
    problems = e.value.problems
    assert any("mailwave.yaml" in p and "data use" in p for p in problems)
    assert any("payflow.yaml" in p and "eligibilty" in p and "Extra inputs" in p for p in problems)


def test_file_transport_without_pgp_is_rejected(policy):
    edit(policy, "parcelpost", lambda d: d.update(encryption={"method": "tls"}))
    with pytest.raises(PolicyError, match="encryption must be pgp"):
        load_register(policy)


def test_phone_transform_without_region_is_rejected(policy):
    edit(policy, "callvault", lambda d: field(d, 0, "caller_phone").pop("country_source"))
    with pytest.raises(PolicyError, match="field 'caller_phone'.*country_source"):
        load_register(policy)


def test_free_text_without_a_length_cap_is_rejected(policy):
    edit(policy, "reviewhub", lambda d: field(d, 0, "body").pop("length"))
    with pytest.raises(PolicyError, match="field 'body'.*'length' goes with transforms 'truncate' and 'text'"):
        load_register(policy)


def test_lint_rejects_undeclared_category(policy):
    def add_ip(d):
        d["feeds"][0]["fields"].append({"name": "ip", "source": "ip_address", "category": "user.device.ip_address",
                                        "transform": "keep"})
    edit(policy, "fraudshield", add_ip)
    findings = lint(load_register(policy), load_notice(policy))
    assert [(f.where, f.severity) for f in findings] == [("vendor 'fraudshield' › feed 'fraudshield_orders' › field 'ip'", "error")]
    assert "user.device.ip_address" in findings[0].message and "fraud_security_providers" in findings[0].message


def test_lint_rejects_advertising_feed_without_consent_rules(policy):
    edit(policy, "socialreach", lambda d: d["feeds"][0].update(eligibility=["min_age_13", "min_age_16"]))
    findings = lint(load_register(policy), load_notice(policy))
    assert len(findings) == 1
    assert "no_gpc" in findings[0].message and "no_sale_share_opt_out" in findings[0].message
    assert "socialreach_custom_audience" in findings[0].where


def test_lint_rejects_marketing_feed_without_opt_in(policy):
    edit(policy, "mailwave", lambda d: d["feeds"][0].update(eligibility=["min_age_13"]))
    findings = lint(load_register(policy), load_notice(policy))
    assert [f.message for f in findings] == ["marketing feed without a consent rule (add marketing_opt_in)"]


def test_lint_rejects_feed_that_does_not_exclude_under_13s(policy):
    edit(policy, "payflow", lambda d: d["feeds"][0].update(eligibility=[]))
    findings = lint(load_register(policy), load_notice(policy))
    assert len(findings) == 1 and "under-13" in findings[0].message and "payflow_settlement" in findings[0].where


def test_lint_rejects_raw_contact_data_to_advertisers(policy):
    edit(policy, "adgrid", lambda d: field(d, 0, "email_sha256").update(transform="email", normaliser=None))
    messages = [f.message for f in lint(load_register(policy), load_notice(policy))]
    assert messages == ["contact data goes to advertising partners hashed, never raw"]


def test_notice_change_turns_a_feed_into_a_finding(policy):
    """If the notice stops declaring call recordings, the call-recording feed becomes a violation."""
    notice = yaml.safe_load((policy / "notice.yaml").read_text())
    section = next(s for s in notice["sections"] if s["id"] == "customer_contact")
    section["collects"] = [c for c in section["collects"] if c["category"] != "user.content.private"]
    (policy / "notice.yaml").write_text(yaml.safe_dump(notice, sort_keys=False))
    findings = lint(load_register(policy), load_notice(policy))
    assert {f.where.split(" › ")[-1] for f in findings} == {"field 'call_id'", "field 'recording_ref'",
                                                            "field 'started_at'", "field 'duration_s'"}


def test_cli_policy_check_exit_codes(policy, capsys):
    assert cli(["policy", "check", "--policy-dir", str(policy)]) == 0
    edit(policy, "mailwave", lambda d: d["feeds"][0].update(eligibility=["min_age_13"]))
    assert cli(["policy", "check", "--policy-dir", str(policy)]) == 1
    assert "mailwave_subscribers" in capsys.readouterr().err
    (policy / "vendors" / "payflow.yaml").write_text("vendor: payflow\nname: [unclosed\n")
    assert cli(["policy", "check", "--policy-dir", str(policy)]) == 2
