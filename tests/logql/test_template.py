"""The text/template subset used by line_format and label_format."""

from __future__ import annotations

import pytest

from sluiceway.logql._template import TemplateError, compile_template, go_printf

LABELS = {"a": "Hello", "n": "42", "path": "/api/users/7", "empty": "", "f": "2.5"}
TS = 1_795_453_860_294_002_000


@pytest.mark.parametrize("tmpl,out", [
    ("plain text", "plain text"),
    ("{{.a}}", "Hello"),
    ("{{ .a }} {{.missing}}|", "Hello |"),
    ("{{ .a | ToUpper }}", "HELLO"),
    ("{{ .a | ToLower }}{{ .a | upper }}{{ .a | lower }}", "helloHELLOhello"),
    ("{{ .a | trunc 3 }}/{{ .a | trunc -2 }}/{{ trunc 10 .a }}", "Hel/lo/Hello"),
    ('{{ .empty | default "dflt" }}/{{ .a | default "dflt" }}', "dflt/Hello"),
    ('{{ .path | replace "/" "." }}', ".api.users.7"),
    ('{{ regexReplaceAll "/users/([0-9]+)" .path "/u/$1" }}', "/api/u/7"),
    ('{{ regexReplaceAll "(?P<x>[0-9]+)" .path "<${x}>" }}', "/api/users/<7>"),
    ('{{ regexReplaceAllLiteral "[0-9]+" .path "$1" }}', "/api/users/$1"),
    ('{{ printf "%s=%d|%5.2f|%q|%v" .a 7 3.14159 .a true }}', 'Hello=7| 3.14|"Hello"|true'),
    ('{{ printf "%-6s|%6s|%03d" .a .a 5 }}', "Hello | Hello|005"),
    ('{{ printf "%d" .a }}', "%!d(string=Hello)"),
    ("{{ __line__ }}", "the line"),
    ("{{ __line__ | ToUpper | trunc 3 }}", "THE"),
    ("{{ __timestamp__ }}", "2026-11-23 17:11:00.294002 +0000 UTC"),
    ('{{ __timestamp__ | date "2006-01-02T15:04:05" }}', "2026-11-23T17:11:00"),
    ("{{ __timestamp__ | unixEpoch }}", "1795453860"),
    ('{{ if .a }}yes{{ end }}{{ if .empty }}no{{ else }}else{{ end }}', "yeselse"),
    ('{{ if eq .n "41" }}a{{ else if eq .n "42" }}b{{ else }}c{{ end }}', "b"),
    ('{{ if and .a (not .empty) }}both{{ end }}', "both"),
    ('{{ if or .empty .a }}one{{ end }}{{ or .empty "x" }}{{ and .a .n }}', "onex42"),
    ('{{ if not .empty }}ok{{ end }}', "ok"),
    ("{{ add 1 2 }} {{ sub 10 .n }} {{ mul 2 3 }} {{ div 7 2 }} {{ mod 7 3 }}", "3 -32 6 3 1"),
    ("{{ addf 1.5 .f }} {{ mulf 2 .f }} {{ ceil 1.2 }} {{ floor 1.8 }}", "4 5 2 1"),
    ("{{ max 1 9 4 }} {{ min 3 2 }} {{ .n | int }} {{ round 2.567 2 }}", "9 2 42 2.57"),
    ('{{ contains "ell" .a }} {{ hasPrefix "He" .a }} {{ hasSuffix "x" .a }}', "true true false"),
    ('{{ .a | b64enc }} {{ "SGk=" | b64dec }}', "SGVsbG8= Hi"),
    ('{{ "a b&c" | urlencode }} {{ "a+b%26c" | urldecode }}', "a+b%26c a b&c"),
    ('{{ trim "  x  " }}|{{ trimPrefix "/api" .path }}|{{ trimSuffix "/7" .path }}',
     "x|/users/7|/api/users"),
    ('{{ substr 1 3 .a }} {{ repeat 3 "ab" }} {{ len .a }}', "el ababab 5"),
    ('{{ alignLeft 7 .a }}|{{ alignRight 7 .a }}|{{ alignLeft 2 .a }}', "Hello  |  Hello|He"),
    ('{{ count "[0-9]" "a1b22" }}', "3"),
    ("{{- .a -}}  \n  {{ .n }}", "Hello42"),
    ("a  {{- .n }}", "a42"),
    ("{{/* a comment */}}x", "x"),
    ('{{ (printf "%s!" .a) | ToUpper }}', "HELLO!"),
    ("{{ `raw {{ ` }}", "raw {{ "),
    ("{{ .a }}{{ .a }}", "HelloHello"),
])
def test_render(tmpl: str, out: str) -> None:
    assert compile_template(tmpl).render(LABELS, "the line", TS) == out


@pytest.mark.parametrize("tmpl", [
    "{{ .a", "{{ nosuch .a }}", "{{ if .a }}x", "{{ end }}", "{{ .a | }}", "{{ ( .a }}",
    "{{ range .a }}{{ end }}", "{{ .a ! }}",
])
def test_compile_errors(tmpl: str) -> None:
    with pytest.raises(TemplateError):
        compile_template(tmpl)


def test_runtime_error_is_template_error() -> None:
    with pytest.raises(TemplateError):
        compile_template('{{ regexReplaceAll "((" .a "x" }}').render(LABELS, "", 0)
    with pytest.raises(TemplateError):
        compile_template("{{ .a 5 }}").render(LABELS, "", 0)


def test_printf_missing_and_extra() -> None:
    assert go_printf("%s %s", "a") == "a %!s(MISSING)"
    assert go_printf("%s", "a", "b") == "a%!(EXTRA b)"
    assert go_printf("100%%") == "100%"


CONV_LABELS = {"d": "1m30s", "us": "250\u03bcs", "b": "2KiB", "mb": "1.5MB", "bad": "abc"}


# `bytes`, `duration` and `duration_seconds` convert as `unwrap` does (Loki's functions).
@pytest.mark.parametrize("tmpl,out", [
    ("{{ duration .d }}", "90"),
    ("{{ .d | duration_seconds }}", "90"),
    ("{{ duration .us }}", "0.00025"),
    ('{{ duration "-1.5h" }}', "-5400"),
    # Go prints a float64 with %v: 1.5e+06 (strconv shortest %g)
    ("{{ bytes .b }} {{ .mb | bytes }}", "2048 1.5e+06"),
    ("{{ div (bytes .b) 1024 }}", "2"),
    ('{{ printf "%.1f" (duration .d) }}', "90.0"),
    ('{{ if gt (duration .d) 60.0 }}slow{{ end }}', "slow"),
])
def test_conversion_functions(tmpl: str, out: str) -> None:
    assert compile_template(tmpl).render(CONV_LABELS, "", 0) == out


@pytest.mark.parametrize("tmpl,detail", [
    ("{{ duration .bad }}", 'error calling duration: time: invalid duration "abc"'),
    ("{{ bytes .bad }}", "error calling bytes:"),
    ("{{ duration 5 }}", "expected string"),
])
def test_conversion_function_errors(tmpl: str, detail: str) -> None:
    with pytest.raises(TemplateError, match=detail):
        compile_template(tmpl).render(CONV_LABELS, "", 0)


# sprig's toDate / toDateInZone: a Go layout; a zone-less time is in the given zone (the
# server's own for toDate); text that does not parse is Go's zero time.
DATE_LABELS = {"day": "2026-11-23", "stamp": "23/Nov/2026:17:11:00 +0100",
               "local": "2026-11-23 17:11:00", "junk": "yesterday"}


@pytest.mark.parametrize("tmpl,out", [
    ('{{ toDateInZone "2006-01-02" .day "UTC" | unixEpoch }}', "1795392000"),
    ('{{ toDateInZone "2006-01-02 15:04:05" .local "Europe/Berlin" | unixEpoch }}',
     "1795450260"),
    ('{{ toDateInZone "02/Jan/2006:15:04:05 -0700" .stamp "Asia/Tokyo" | unixEpoch }}',
     "1795450260"),
    ('{{ toDateInZone "DateTime" .local "UTC" | date "2006-01-02T15:04" }}', "2026-11-23T17:11"),
    ('{{ toDateInZone "2006-01-02" .junk "UTC" | unixEpoch }}', "-62135596800"),
    ('{{ toDateInZone "2006-01-02" .day "Not/AZone" | unixEpoch }}', "-62135596800"),
])
def test_to_date(tmpl: str, out: str) -> None:
    assert compile_template(tmpl).render(DATE_LABELS, "", 0) == out


def test_to_date_uses_the_server_zone() -> None:
    import time

    offset = -time.localtime(1795392000).tm_gmtoff
    got = compile_template('{{ toDate "2006-01-02" .day | unixEpoch }}').render(DATE_LABELS, "", 0)
    assert got == str(1795392000 + offset)
