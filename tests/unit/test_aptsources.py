from bay_salt.node import aptsources

DEB822 = """Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
"""

ONE_LINE = """# old style
deb [arch=amd64 signed-by=/x.gpg] http://old.example/debian/ bookworm main contrib
deb http://old.example/debian-security bookworm-security main
deb-src http://old.example/debian bookworm main
"""


def test_deb822_skips_sources_disabled_and_non_deb():
    sources = aptsources.parse_deb822(DEB822)
    assert [s.uri for s in sources] == ["http://mirror.example/debian", "http://mirror.example/debian-security"]
    assert aptsources.debian_mirror(sources) == "http://mirror.example/debian"


def test_one_line_with_options():
    sources = aptsources.parse_one_line(ONE_LINE)
    assert sources[0] == aptsources.AptSource("http://old.example/debian/", ("bookworm",), ("main", "contrib"))
    assert aptsources.debian_mirror(sources) == "http://old.example/debian"


def test_read_sources_from_a_root(tmp_path):
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True)
    (tmp_path / "etc/apt/sources.list.d/debian.sources").write_text(DEB822)
    assert aptsources.debian_mirror(aptsources.read_sources(str(tmp_path)), "bookworm") == "http://mirror.example/debian"
    src = aptsources.bullseye_source(str(tmp_path))
    assert "URIs: http://mirror.example/debian\n" in src and "Suites: bullseye\n" in src


def test_no_mirror_is_an_error(tmp_path):
    import pytest

    with pytest.raises(LookupError):
        aptsources.debian_mirror(aptsources.read_sources(str(tmp_path)))
