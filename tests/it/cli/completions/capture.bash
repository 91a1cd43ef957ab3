# Prints what the registered bash completion offers for each command line
# given, completed at its end as bash would: per line, the words one a line,
# then `--end--`. Sourced after the completion files, with the lines as "$@".
capture() {
    local line=$1 spec
    COMP_LINE=$line
    COMP_POINT=${#line}
    read -ra COMP_WORDS <<<"$line"
    if [[ $line == *" " ]]; then
        COMP_WORDS+=("")
    fi
    COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    COMPREPLY=()
    spec=$(complete -p "${COMP_WORDS[0]}") || return 1
    spec=${spec#* -F }
    "${spec%% *}" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf '%s\n' "${COMPREPLY[@]}"
    echo --end--
}
for line in "$@"; do
    capture "$line" || exit 1
done
