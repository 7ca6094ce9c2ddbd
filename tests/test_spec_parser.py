"""The inline-spec parser refuses what it cannot read with its own ValueError/TypeError, never another exception."""
import pytest
from hypothesis import given, settings, strategies as st

import qsim

VALID = ["fixed<8,4>", "fixed<8,4,unsigned,wrap>", "float<e5m2>", "float<e4m3,fn,nan>", "float<e3m2,nosub>",
         "bfp<8,32,dim=0>", "mx<fp8_e4m3,32,rceil>", "mx<fp4_e2m1,16,scale=fp8_e4m3,tensor_scale>",
         "mx<float<e2m1,finite>,32>", "posit<16,1>", "lns<4,3,linear>"]
ALPHABET = "<>,=-0123456789efmxdpnabilostuwr ٣８" + "".join(sorted(set("".join(VALID))))


def parses_or_refuses(spec: str) -> None:
    try:
        fmt = qsim.formats.get(spec)
    except (ValueError, TypeError) as err:
        assert str(err), spec
    else:
        assert isinstance(fmt, qsim.formats.Format)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=40))
def test_random_strings_parse_or_raise_the_parsers_own_errors(spec):
    parses_or_refuses(spec)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(VALID), st.integers(0, 60), st.sampled_from(["insert", "delete", "replace", "double"]),
       st.sampled_from(list(ALPHABET)))
def test_one_mutation_of_a_valid_spec_parses_or_raises_the_parsers_own_errors(spec, at, how, char):
    at %= len(spec)
    mutated = {"insert": spec[:at] + char + spec[at:], "delete": spec[:at] + spec[at + 1:],
               "replace": spec[:at] + char + spec[at + 1:], "double": spec[:at] + spec[at:] * 2}[how]
    parses_or_refuses(mutated)


@pytest.mark.parametrize("spec, says", [
    ("float<e4m3,fn,fnuz>", "'fn' and 'fnuz' conflict"),
    ("float<e5m2,inf,saturate>", "'inf' and 'saturate' conflict"),
    ("mx<fp8_e4m3,ceil,floor>", "'ceil' and 'floor' conflict"),
    ("mx<fp8_e4m3,scale=fp8_e4m3,scale=fp8_e5m2>", "the same option twice"),
    ("bfp<8,dim=0,dim=1>", "'dim=0' and 'dim=1' conflict"),
    ("bfp<8,16,32>", "two block sizes"),
    ("fixed<8,4,wrap,saturate>", "'wrap' and 'saturate' conflict"),
    ("lns<4,3,log,linear>", "'log' and 'linear' conflict"),
    ("mx<" * 200, "nested more than 2 levels deep at position 8"),
    ("float<e4m3>>", "unbalanced '>' at position 11"),
    ("mx<fixed<1,0>>", "fixed<1,0> has no positive value"),
    ("fixed<８,4>", "expected fixed<wl,fl"),
    ("posit<" + "9" * 5000 + ",2>", "expected posit<nbits,es>"),
])
def test_conflicting_duplicated_or_malformed_specs_are_refused_by_name(spec, says):
    with pytest.raises(ValueError, match=None) as raised:
        qsim.formats.get(spec)
    assert says in str(raised.value)
