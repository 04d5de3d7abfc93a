# bash completion for btest (btest-rs). Installed as
# /usr/share/bash-completion/completions/btest; or source it from ~/.bashrc.
# The flag lists follow `btest --help`; tests/completions.rs keeps them in step.

_btest() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local prev=
    [ "$COMP_CWORD" -gt 0 ] && prev=${COMP_WORDS[COMP_CWORD-1]}
    local switches="-s --server -t --transmit -r --receive -u --udp --ecsrp5 -n --nat
        -q --quiet -v --verbose --random --json --json-lines --timestamps --per-stream
        -V --version -h --help"
    local options="-c --client -b --bandwidth -P --port --listen --listen6 -a --authuser
        -p --authpass -d --duration --csv --svg --syslog --connections --local-tx-speed
        --remote-tx-speed --udp-size --udp-port-base --max-sessions --max-handshakes-per-ip
        --ipv6-prefix"

    case $prev in
        -c|--client|--syslog)
            COMPREPLY=($(compgen -A hostname -- "$cur"))
            return ;;
        --csv|--svg)
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -f -- "$cur"))
            return ;;
        -b|--bandwidth|--local-tx-speed|--remote-tx-speed)
            COMPREPLY=($(compgen -W "500K 10M 100M 1G 10G" -- "$cur"))
            return ;;
        --listen)
            COMPREPLY=($(compgen -W "0.0.0.0 127.0.0.1 none" -- "$cur"))
            return ;;
        --listen6)
            COMPREPLY=($(compgen -W ":: ::1" -- "$cur"))
            return ;;
        -P|--port|-a|--authuser|-p|--authpass|-d|--duration|--connections|--udp-size|\
        --udp-port-base|--max-sessions|--max-handshakes-per-ip|--ipv6-prefix)
            # A value the user types; offering flags here would be wrong.
            COMPREPLY=()
            return ;;
    esac
    COMPREPLY=($(compgen -W "$switches $options" -- "$cur"))
}
complete -F _btest btest
