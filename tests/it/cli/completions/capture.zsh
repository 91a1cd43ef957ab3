# Prints what zsh's completion offers for each command line given, one block
# per line ending in `--end--`: the words completion added (compadd's -O
# array, so only those matching what is typed), one per line.
# Usage: zsh -f capture.zsh FPATH_DIR... -- 'cargo ktstr te' ...
zmodload zsh/zpty || exit 2
fdirs=()
while [[ $1 != -- ]]; do fdirs+=("$1"); shift; done
shift
out=$(mktemp)
zpty shell zsh -f -i
zpty -w shell "fpath=(${(j: :)${(@q)fdirs}} \$fpath); autoload -U compinit; compinit -u -D"
zpty -w shell "unsetopt auto_list auto_menu list_beep; PS1=''; out=${(q)out}"
# Record every match completion offers, then let compadd add it as usual.
zpty -w shell 'compadd() { local -a hits; builtin compadd -O hits "$@"; (( $#hits )) && print -rl -- $hits >> $out; builtin compadd "$@" }'
zpty -w shell '_capture() { zle complete-word; print -r -- --end-- >> $out; zle kill-whole-line }; zle -N _capture; bindkey "^T" _capture'
# Type each line only once the shell waits at its prompt: typed ahead, a line
# would reach the terminal while it is not in ZLE's raw mode.
await() {
    local i
    for (( i = 0; i < 400; i++ )); do
        [[ $(<$out) == *"$1"* ]] && return 0
        sleep 0.05
    done
    print -u2 "capture.zsh: zsh never printed $1"
    exit 1
}
zpty -w shell 'print -r -- --ready-- > $out'
await --ready--
for line in "$@"; do
    : > $out
    zpty -w -n shell "$line"$'\C-t'
    await --end--
    sort -u $out | grep -vx -- --end-- 
    print -r -- --end--
done
zpty -d shell
rm -f $out
