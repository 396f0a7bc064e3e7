#!/bin/sh
# docs/readme-options.sh README GENERATED - README with its option tables
# (between the "options:" markers) replaced by those of GENERATED
# (docs/agipd-correct.md, from the option table in src/util/opts.c); on stdout.
# `make docs` runs it.
awk -v gen="$2" '
/^<!-- options: begin/ {
	print
	keep = 0
	while ((getline line < gen) > 0) {
		if (line ~ /^## Options/) { keep = 1; continue }
		if (keep && line ~ /^## /) break
		if (keep) print line
	}
	skip = 1
	next
}
/^<!-- options: end/ { skip = 0 }
!skip { print }
' "$1"
