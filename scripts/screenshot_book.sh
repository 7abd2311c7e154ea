#!/usr/bin/env bash
# Render pages of the built book (_build/html) to PNG with headless chromium.
#
# Usage:
#   scripts/screenshot_book.sh [-o OUTDIR] [-w WIDTH] [-h HEIGHT] [PAGE ...]
#
#   PAGE   a path relative to _build/html, with or without ".html"
#          (e.g. book/00_preface or book/00_preface.html). Default: book/intro book/00_preface
#   -o     output folder for the PNGs (default: _build/screenshots)
#   -w/-h  window size in pixels (default: 1280 x 2000)
#
# Environment:
#   BOOK_HTML   the built HTML folder (default: <repo root>/_build/html)
#   CHROMIUM    the browser binary (default: first of chromium, chromium-browser,
#               google-chrome found on PATH). On Debian: apt-get install -y chromium
#   MATHJAX     a local MathJax.js to use instead of the CDN copy the pages load (the CDN
#               is unreachable offline, and math would show as raw LaTeX). Default:
#               /usr/share/javascript/mathjax/MathJax.js if it exists (Debian package
#               libjs-mathjax, MathJax 2). Set MATHJAX=none to keep the pages unchanged.
#               The pages are then rendered from a temporary patched copy of the build;
#               _build/html itself is never modified.
#
# Build the book first:  jupyter-book build . --all -W -n --keep-going
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
html_dir="${BOOK_HTML:-$repo_root/_build/html}"
out_dir="$repo_root/_build/screenshots"
width=1280
height=2000

while getopts "o:w:h:" opt; do
  case "$opt" in
    o) out_dir="$OPTARG" ;;
    w) width="$OPTARG" ;;
    h) height="$OPTARG" ;;
    *) sed -n '2,/^set -euo/p' "$0" | grep '^#'; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
pages=("$@")
[ ${#pages[@]} -eq 0 ] && pages=(book/intro book/00_preface)

browser="${CHROMIUM:-}"
if [ -z "$browser" ]; then
  for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then browser="$b"; break; fi
  done
fi
if [ -z "$browser" ]; then
  echo "error: no chromium found (Debian: apt-get install -y chromium, or set CHROMIUM)" >&2
  exit 1
fi
if [ ! -d "$html_dir" ]; then
  echo "error: $html_dir not found; build the book first" >&2
  exit 1
fi

mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"

mathjax="${MATHJAX:-/usr/share/javascript/mathjax/MathJax.js}"
tmp_html=""
if [ "$mathjax" != "none" ] && [ -f "$mathjax" ]; then
  tmp_html="$(mktemp -d)"
  trap 'rm -rf "$tmp_html"' EXIT
  cp -r "$html_dir/." "$tmp_html/"
  # Replace the CDN MathJax 3 script with the local MathJax 2 file, and Sphinx's MathJax 3
  # options with their MathJax 2 equivalent (myst-nb marks pages "mathjax_ignore" and
  # math elements "math", so MathJax must be told to process only those).
  mj2_config='window.MathJax = {tex2jax: {processClass: "math|tex2jax_process|mathjax_process|output_area", ignoreClass: "tex2jax_ignore|mathjax_ignore"}};'
  find "$tmp_html" -name '*.html' -exec sed -i -E \
    -e "s#src=\"https://cdn\.jsdelivr\.net/npm/mathjax@3/[^\"]*\"#src=\"file://$mathjax?config=TeX-AMS-MML_HTMLorMML\"#" \
    -e "s#<script>window\.MathJax = \{[^<]*\}</script>#<script>$mj2_config</script>#" {} +
  html_dir="$tmp_html"
fi

status=0
for page in "${pages[@]}"; do
  page="${page%.html}"
  src="$html_dir/$page.html"
  if [ ! -f "$src" ]; then
    echo "error: $src not found" >&2
    status=1
    continue
  fi
  png="$out_dir/$(echo "$page" | tr '/' '_').png"
  profile="$(mktemp -d)"
  # Chromium is noisy on stderr (dbus, GPU); keep it in a log next to the PNG.
  if "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --hide-scrollbars --user-data-dir="$profile" --window-size="$width,$height" \
      --virtual-time-budget=5000 --screenshot="$png" "file://$src" \
      >"$png.log" 2>&1 && [ -s "$png" ]; then
    rm -f "$png.log"
    echo "$png"
  else
    echo "error: chromium failed for $page (see $png.log)" >&2
    status=1
  fi
  rm -rf "$profile"
done
exit $status
