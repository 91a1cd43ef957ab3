
# `cargo ktstr ...` runs `cargo-ktstr ktstr ...`: complete it as `cargo-ktstr ...`.
# Every other cargo command goes to the cargo completion registered before this
# file was sourced, or else the one bash-completion can load.
_cargo_ktstr_spec=$(complete -p cargo 2>/dev/null)
case $_cargo_ktstr_spec in
    *" -F _cargo_ktstr_via_cargo "*) ;; # sourced again: keep the one found first
    *" -F "*)
        _cargo_ktstr_next=${_cargo_ktstr_spec#* -F }
        _cargo_ktstr_next=${_cargo_ktstr_next%% *}
        ;;
esac
unset _cargo_ktstr_spec

_cargo_ktstr_register() {
    if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
        complete -F _cargo_ktstr_via_cargo -o nosort -o bashdefault -o default cargo
    else
        complete -F _cargo_ktstr_via_cargo -o bashdefault -o default cargo
    fi
}

_cargo_ktstr_via_cargo() {
    local i=1
    # cargo's own options may come before the command.
    while (( i < COMP_CWORD )); do
        case "${COMP_WORDS[i]}" in
            --color|--config|--explain|-C|-Z) (( i += 2 )) ;;
            [-+]*) (( i += 1 )) ;;
            *) break ;;
        esac
    done
    if (( i < COMP_CWORD )) && [[ "${COMP_WORDS[i]}" == ktstr ]]; then
        local -a words=(cargo-ktstr "${COMP_WORDS[@]:i+1}")
        local cword=$(( COMP_CWORD - i ))
        local COMP_CWORD=$cword
        local -a COMP_WORDS=("${words[@]}")
        _cargo_ktstr cargo-ktstr "$2" "${COMP_WORDS[COMP_CWORD-1]}"
        return
    fi
    if [[ -z "${_cargo_ktstr_next-}" ]]; then
        # bash-completion loads a command's completion on first use, but this
        # one took `cargo`'s place: load it by hand, then take the place back.
        if declare -F _comp_load >/dev/null; then
            _comp_load cargo
        elif declare -F __load_completion >/dev/null; then
            __load_completion cargo
        fi
        local spec
        spec=$(complete -p cargo 2>/dev/null)
        case $spec in
            *" -F _cargo_ktstr_via_cargo "*) ;;
            *" -F "*)
                _cargo_ktstr_next=${spec#* -F }
                _cargo_ktstr_next=${_cargo_ktstr_next%% *}
                ;;
        esac
        _cargo_ktstr_register
    fi
    if [[ -n "${_cargo_ktstr_next-}" ]]; then
        "$_cargo_ktstr_next" "$@"
    elif (( i == COMP_CWORD )); then
        # No cargo completion anywhere: still name this command.
        COMPREPLY=( $(compgen -W "ktstr" -- "$2") )
    fi
}

_cargo_ktstr_register
