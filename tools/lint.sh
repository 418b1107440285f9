#!/usr/bin/env bash
# The non-Rust linters (`make lint` also runs cargo fmt --check and clippy):
#   actionlint         .github/workflows/*.yml (with shellcheck on their run: scripts)
#   hadolint           Dockerfile
#   ShellCheck         every shell script: *.sh, .ci/run, files with a sh/bash shebang
#   ruff check         the Python files under deploy/, bench/, interop/, lineage/, catalogs/, tools/
#   yamllint           the YAML files (tools/yamllint.yml)
#   check-jsonschema   .github/dependabot.yml against Dependabot's schema
#   cfn-lint           the CloudFormation templates (deploy/aws/*.cfn.yaml), and
#                      deploy/aws/policies/render.py check-cfn: their policies are
#                      the JSON files of deploy/aws/policies/, statement for statement
#   cargo-deny         `check licenses bans sources` against deny.toml (offline;
#                      advisories need the RustSec database: GitHub's advisories.yml only)
#   tools/check-docs   every Markdown file: relative links (and #anchors) exist, every
#                      `make <target>` shown as a command is a Makefile target
#   tools/check-paths  every text file (Markdown, shell, Python, TOML, YAML, INI, the
#                      Makefile, the Dockerfile, .ci/run): no relative path climbs out
#                      of the repository, no file names the steering repository's files
#   tools/check-floors every module of src/ uses only the floors below it, and no two
#                      modules use each other (docs/architecture.md)
# Installs them first (tools/install-lint-tools.sh, cached outside the clone).
# Runs every linter even when one fails; exits 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

tools_path="$(./tools/install-lint-tools.sh)"
export PATH="$tools_path:$PATH"

# The repository's files: tracked ones and new ones not ignored, or all files
# outside a git checkout.
list_files() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
      [[ -f $f ]] && printf '%s\n' "$f"
    done
  else
    find . -type f -not -path './.git/*' -not -path './target/*' | sed 's|^\./||'
  fi
}
mapfile -t files < <(list_files | sort)

shell_scripts=()
python_files=()
yaml_files=()
cfn_templates=()
for f in "${files[@]}"; do
  case "$f" in
    *.sh | .ci/run) shell_scripts+=("$f") ;;
    *.py)
      case "$f" in deploy/* | bench/* | interop/* | lineage/* | catalogs/* | tools/*) python_files+=("$f") ;; esac
      ;;
    *.cfn.yaml)
      yaml_files+=("$f")
      cfn_templates+=("$f")
      ;;
    *.yml | *.yaml) yaml_files+=("$f") ;;
    *.*) ;;
    *)
      # Extensionless executables: scripts if their shebang says sh or bash.
      if head -c 64 "$f" 2>/dev/null | head -n1 | grep -Eq '^#!.*([/ ](ba)?sh)([[:space:]]|$)'; then
        shell_scripts+=("$f")
      fi
      ;;
  esac
done

passed=0
failed=0
run() {
  local name="$1"
  shift
  if "$@"; then
    passed=$((passed + 1))
    echo "lint: $name: ok"
  else
    failed=$((failed + 1))
    echo "lint: $name: FAILED"
  fi
}

workflows=(.github/workflows/*.yml)
run "actionlint (${#workflows[@]} workflows)" actionlint "${workflows[@]}"
run "hadolint Dockerfile" hadolint Dockerfile
run "shellcheck (${#shell_scripts[@]} scripts)" shellcheck --external-sources "${shell_scripts[@]}"
if [[ ${#python_files[@]} -gt 0 ]]; then
  run "ruff check (${#python_files[@]} files)" ruff check --no-cache "${python_files[@]}"
fi
run "yamllint (${#yaml_files[@]} files)" yamllint --strict -c tools/yamllint.yml "${yaml_files[@]}"
if [[ -f .github/dependabot.yml ]]; then
  run "check-jsonschema dependabot.yml" check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
fi

if [[ ${#cfn_templates[@]} -gt 0 ]]; then
  run "cfn-lint (${#cfn_templates[@]} templates)" cfn-lint "${cfn_templates[@]}"
  run "policies in deploy/aws/shoplake.cfn.yaml == deploy/aws/policies/*.json" \
    python deploy/aws/policies/render.py check-cfn deploy/aws/shoplake.cfn.yaml
fi
# Offline: Cargo.lock and the registry's cached manifests (`cargo metadata`).
run "cargo deny check licenses bans sources" cargo deny check licenses bans sources
# Python 3 standard library only; lists the Markdown files as above (git, new files included).
run "check-docs (links, anchors, make targets)" python3 tools/check-docs
run "check-paths (nothing points outside the repository)" python3 tools/check-paths
run "check-floors (modules use only the floors below them)" python3 tools/check-floors

echo "lint: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
