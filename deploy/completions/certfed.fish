# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_certfed_global_optspecs
    string join \n h/help V/version
end

function __fish_certfed_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_certfed_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_certfed_using_subcommand
    set -l cmd (__fish_certfed_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c certfed -n "__fish_certfed_needs_command" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_needs_command" -s V -l version -d 'Print version'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "serve" -d 'Run a node in the foreground until SIGTERM/SIGINT (systemd Type=notify)'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "check-config" -d 'Check a configuration file exactly as `serve` would (files, keys, permissions, identities, peers, members) without opening a port; exit 0 when `serve` would accept it, 1 naming the problem otherwise'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "pki" -d 'Create a federation CA, node and operator certificates, CRLs and signing keys'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "roster" -d 'The signed federation roster: draft, sign and verify offline; publish and show online'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "demo" -d 'Start a real local federation on loopback and play a short scenario, ending with the incident\'s HTML situation report'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "exercise" -d 'Exercises: play a scenario on a local federation and report who knew what when (deploy/exercises/*.toml)'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "bench" -d 'Run the standard benchmark on loopback (starts its own nodes)'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "completions" -d 'Print a shell completion script (bash: source it, or install it as /usr/share/bash-completion/completions/certfed)'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "man" -d 'Write the man pages (certfed.1 and one per subcommand) to a folder'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "info" -d 'Node identity, version, peers and members'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "alert" -d 'Publish, list and inspect incident alerts'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "attachment" -d 'Evidence attached to messages: list them with their state, download one'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "assist" -d 'Request, offer, decide and follow assistance (Tallinn Mechanism style)'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "incident" -d 'Incidents across partners: the shared picture, sightings, links, status, merges and the HTML situation report'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "peers" -d 'Direct peers and the state of each link (and the last reconciliation with each)'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "delivery" -d 'Per-peer delivery state of a message'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "feed" -d 'Write a feed of the node\'s alerts that other tools fetch (MISP feed folder)'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "watch" -d 'Stream messages as the node stores them (with --json: one JSON object per line)'
complete -c certfed -n "__fish_certfed_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand serve" -s c -l config -d 'Configuration file (TOML); CERTFED__SECTION__KEY variables override it' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand serve" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand check-config" -s c -l config -d 'Configuration file (TOML); CERTFED__SECTION__KEY variables override it' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and not __fish_seen_subcommand_from ca node operator signing-key revoke crl help" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and not __fish_seen_subcommand_from ca node operator signing-key revoke crl help" -f -a "ca" -d 'Create a new federation CA: DIR/ca.crt and DIR/ca.key (mode 0600)'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and not __fish_seen_subcommand_from ca node operator signing-key revoke crl help" -f -a "node" -d 'Issue a node TLS certificate (URI SAN urn:certfed:node:<ID>, serverAuth+clientAuth)'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and not __fish_seen_subcommand_from ca node operator signing-key revoke crl help" -f -a "operator" -d 'Issue an operator client certificate (URI SAN urn:certfed:operator:<NAME>, clientAuth)'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and not __fish_seen_subcommand_from ca node operator signing-key revoke crl help" -f -a "signing-key" -d 'Create an Ed25519 message-signing key pair: <ID>.sign.key (0600) and <ID>.sign.pub'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and not __fish_seen_subcommand_from ca node operator signing-key revoke crl help" -f -a "revoke" -d 'Revoke certificates: add them to the CA\'s CRL (read if present) and re-sign it'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and not __fish_seen_subcommand_from ca node operator signing-key revoke crl help" -f -a "crl" -d 'Write a fresh CRL (empty, or keeping the entries of the existing one)'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and not __fish_seen_subcommand_from ca node operator signing-key revoke crl help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from ca" -l out-dir -d 'Directory to write ca.crt and ca.key into (created if missing)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from ca" -l name -d 'The CA\'s name (certificate common name)' -r
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from ca" -l days -d 'Validity in days' -r
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from ca" -l force -d 'Overwrite existing files (private keys are replaced atomically, mode 0600)'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from ca" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from node" -l ca-dir -d 'Directory holding ca.crt and ca.key' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from node" -l id -d 'Node (member) id, e.g. node-a: 1-63 of a-z 0-9 - . _' -r
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from node" -l dns -d 'DNS name the node is reachable as (repeat, or comma-separate)' -r
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from node" -l ip -d 'IP address the node is reachable at (repeat, or comma-separate)' -r
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from node" -l out-dir -d 'Directory to write <ID>.crt and <ID>.key into (created if missing)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from node" -l days -d 'Validity in days' -r
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from node" -l force -d 'Overwrite existing files (private keys are replaced atomically, mode 0600)'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from node" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from operator" -l ca-dir -d 'Directory holding ca.crt and ca.key' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from operator" -l name -d 'Operator name, e.g. alice: 1-63 of a-z 0-9 - . _' -r
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from operator" -l out-dir -d 'Directory to write <NAME>.crt and <NAME>.key into (created if missing)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from operator" -l days -d 'Validity in days' -r
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from operator" -l force -d 'Overwrite existing files (private keys are replaced atomically, mode 0600)'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from operator" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from signing-key" -l id -d 'Node id the key belongs to (names the files)' -r
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from signing-key" -l out-dir -d 'Directory to write <ID>.sign.key and <ID>.sign.pub into (created if missing)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from signing-key" -l force -d 'Overwrite existing files (private keys are replaced atomically, mode 0600)'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from signing-key" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from revoke" -l ca-dir -d 'Directory holding ca.crt and ca.key' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from revoke" -l serial -d 'Serial number to revoke, in hex (as printed when issued; repeatable)' -r
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from revoke" -l cert -d 'Certificate file to revoke (repeatable)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from revoke" -l crl -d 'CRL file to update [default: <CA_DIR>/ca.crl]' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from revoke" -l days -d 'Days until the CRL\'s next update (nodes may reject a CRL past it)' -r
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from revoke" -l force -d 'Start a new CRL if the existing one cannot be read or belongs to another CA (its entries are lost)'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from crl" -l ca-dir -d 'Directory holding ca.crt and ca.key' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from crl" -l crl -d 'CRL file to write [default: <CA_DIR>/ca.crl]' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from crl" -l days -d 'Days until the CRL\'s next update (nodes may reject a CRL past it)' -r
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from crl" -l force -d 'Start a new, empty CRL if the existing one cannot be read or belongs to another CA (its entries are lost)'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from crl" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "ca" -d 'Create a new federation CA: DIR/ca.crt and DIR/ca.key (mode 0600)'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "node" -d 'Issue a node TLS certificate (URI SAN urn:certfed:node:<ID>, serverAuth+clientAuth)'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "operator" -d 'Issue an operator client certificate (URI SAN urn:certfed:operator:<NAME>, clientAuth)'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "signing-key" -d 'Create an Ed25519 message-signing key pair: <ID>.sign.key (0600) and <ID>.sign.pub'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke certificates: add them to the CA\'s CRL (read if present) and re-sign it'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "crl" -d 'Write a fresh CRL (empty, or keeping the entries of the existing one)'
complete -c certfed -n "__fish_certfed_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and not __fish_seen_subcommand_from init add-member remove-member rotate-key set-stewards sign verify publish show help" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and not __fish_seen_subcommand_from init add-member remove-member rotate-key set-stewards sign verify publish show help" -f -a "init" -d 'Start a draft: version 1 of a new federation, or (--from) the next version of the current roster'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and not __fish_seen_subcommand_from init add-member remove-member rotate-key set-stewards sign verify publish show help" -f -a "add-member" -d 'Add a member to a draft'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and not __fish_seen_subcommand_from init add-member remove-member rotate-key set-stewards sign verify publish show help" -f -a "remove-member" -d 'Remove a member from a draft (its messages will be refused, its links closed)'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and not __fish_seen_subcommand_from init add-member remove-member rotate-key set-stewards sign verify publish show help" -f -a "rotate-key" -d 'Rotate a member\'s signing key in a draft: the old key stays valid for messages created up to --old-valid-hours from now, the new one is added'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and not __fish_seen_subcommand_from init add-member remove-member rotate-key set-stewards sign verify publish show help" -f -a "set-stewards" -d 'Replace the stewards and threshold of a draft (the old stewards\' quorum must still sign this version)'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and not __fish_seen_subcommand_from init add-member remove-member rotate-key set-stewards sign verify publish show help" -f -a "sign" -d 'Add one steward\'s signature to a roster file (offline; the roster bytes are not changed)'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and not __fish_seen_subcommand_from init add-member remove-member rotate-key set-stewards sign verify publish show help" -f -a "verify" -d 'Check a roster file (against the current one with --current) and print what changes'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and not __fish_seen_subcommand_from init add-member remove-member rotate-key set-stewards sign verify publish show help" -f -a "publish" -d 'Hand a signed roster to a node: it checks it, applies it and floods it to the federation'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and not __fish_seen_subcommand_from init add-member remove-member rotate-key set-stewards sign verify publish show help" -f -a "show" -d 'Show the roster a node holds: version, members, who signed it, what changed'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and not __fish_seen_subcommand_from init add-member remove-member rotate-key set-stewards sign verify publish show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from init" -l out -d 'The draft file to write' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from init" -l federation -d 'Name of the federation (new federations only)' -r
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from init" -l steward -d 'A steward, as ID=PUBLIC_KEY.pem (`certfed pki signing-key` writes the key pair; repeatable; new federations only)' -r
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from init" -l threshold -d 'How many stewards must sign each version (new federations only)' -r
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from init" -l from -d 'Start the next version from this current roster (as `certfed roster show --out` writes it)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from init" -l expires-days -d 'Days from now until the draft expires' -r
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from init" -l force -d 'Overwrite --out if it exists'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from init" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from add-member" -l id -d 'Member id (its node id)' -r
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from add-member" -l signing-key -d 'The member\'s message-signing public key (PEM; repeatable)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from add-member" -l tls-ca -d 'A CA certificate (PEM) allowed to issue the member\'s node and operator certificates (repeatable)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from add-member" -l pin-cert -d 'A certificate (PEM) whose public key is pinned for the member (repeatable)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from add-member" -l display-name -d 'Name shown to operators' -r
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from add-member" -l country -d 'ISO 3166-1 alpha-2 country code' -r
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from add-member" -l contact -d 'How to reach the member\'s team' -r
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from add-member" -l exercise-only -d 'Accept only exercise traffic from this member'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from add-member" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from remove-member" -l id -d 'Member id' -r
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from remove-member" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from rotate-key" -l id -d 'Member id' -r
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from rotate-key" -l new-key -d 'The member\'s new signing public key (PEM)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from rotate-key" -l old-valid-hours -d 'Hours from now during which messages signed with the old key are still accepted (messages in flight across the rotation are not lost)' -r
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from rotate-key" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from set-stewards" -l steward -d 'A steward, as ID=PUBLIC_KEY.pem (repeatable)' -r
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from set-stewards" -l threshold -d 'How many stewards must sign' -r
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from set-stewards" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from sign" -l key -d 'The steward\'s private signing key (PEM, mode 0600)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from sign" -l out -d 'Write the signed roster here instead of over FILE' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from sign" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from verify" -l current -d 'The roster the federation holds now (`certfed roster show --out`); without it the file is checked as a first roster (its own stewards\' quorum)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from publish" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from publish" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from publish" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from publish" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from publish" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from publish" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from show" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from show" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from show" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from show" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from show" -l out -d 'Also write the held signed roster to this file (to start the next draft from)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from show" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from help" -f -a "init" -d 'Start a draft: version 1 of a new federation, or (--from) the next version of the current roster'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from help" -f -a "add-member" -d 'Add a member to a draft'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from help" -f -a "remove-member" -d 'Remove a member from a draft (its messages will be refused, its links closed)'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from help" -f -a "rotate-key" -d 'Rotate a member\'s signing key in a draft: the old key stays valid for messages created up to --old-valid-hours from now, the new one is added'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from help" -f -a "set-stewards" -d 'Replace the stewards and threshold of a draft (the old stewards\' quorum must still sign this version)'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from help" -f -a "sign" -d 'Add one steward\'s signature to a roster file (offline; the roster bytes are not changed)'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Check a roster file (against the current one with --current) and print what changes'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from help" -f -a "publish" -d 'Hand a signed roster to a node: it checks it, applies it and floods it to the federation'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show the roster a node holds: version, members, who signed it, what changed'
complete -c certfed -n "__fish_certfed_using_subcommand roster; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand demo" -l report -d 'Where to write the situation report' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand demo" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and not __fish_seen_subcommand_from run report help" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and not __fish_seen_subcommand_from run report help" -f -a "run" -d 'Play a scenario (deploy/exercises/*.toml) on a local federation it starts (one node per participant: real TLS and storage on loopback), record who knew what when from every node, and write the report'
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and not __fish_seen_subcommand_from run report help" -f -a "report" -d 'Render the report of a run from its JSON record'
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and not __fish_seen_subcommand_from run report help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and __fish_seen_subcommand_from run" -l speed -d 'Replay speed: 10 plays a 40-minute scenario in 4 minutes' -r
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and __fish_seen_subcommand_from run" -l out -d 'Folder for the report files (default: the current folder)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and __fish_seen_subcommand_from run" -l credentials -d 'Play on a live federation instead: each participant\'s node and operator credentials, from this file (TOML, one [[participants]] table each: id, node, ca, cert, key)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and __fish_seen_subcommand_from run" -l dry-run -d 'Validate the scenario and print its plan; start and send nothing'
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and __fish_seen_subcommand_from run" -l quiet -d 'Print only the report summary, not each inject as it is sent'
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and __fish_seen_subcommand_from report" -l html -d 'Write the HTML report (with the SVG timeline) here' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and __fish_seen_subcommand_from report" -l json -d 'Write the JSON report here' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and __fish_seen_subcommand_from report" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and __fish_seen_subcommand_from help" -f -a "run" -d 'Play a scenario (deploy/exercises/*.toml) on a local federation it starts (one node per participant: real TLS and storage on loopback), record who knew what when from every node, and write the report'
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and __fish_seen_subcommand_from help" -f -a "report" -d 'Render the report of a run from its JSON record'
complete -c certfed -n "__fish_certfed_using_subcommand exercise; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l messages -d 'Signed alerts pushed in the ingest phase' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l rate -d 'Publish rate of the relay phase (messages per second)' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l seconds -d 'Duration of the relay phase in seconds' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l memory-messages -d 'Signed alerts queued in the memory phase' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l disk-messages -d 'Signed alerts stored (and later purged) in the disk phase' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l reconcile-messages -d 'Signed alerts both nodes hold in the reconciliation phase' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l reconcile-missing -d 'Of those, how many the receiving node lacks (chosen at random)' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l roster -d 'Run only the roster phase: N in-process nodes (default 10) on roster v1; v2 published on one node; time until every node applied it' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l incident-sightings -d 'Sightings reported into the incident in the incident phase' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l incident-noise -d 'Loose alerts (in no incident) carrying the incident\'s indicator in the incident phase' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l federation -d 'Run only the federation phase: N real node processes (default 37) in a seeded random topology of degree 3 to 5, playing GREEN broadcasts and AMBER alerts to named recipients from random origins' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l federation-seed -d 'Seed of the federation phase\'s topology, origins and recipients' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l federation-green -d 'GREEN broadcasts played in the federation phase' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l federation-amber -d 'AMBER alerts (to named recipients) played in the federation phase' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l federation-recipients -d 'Named recipients of each AMBER alert in the federation phase' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l federation-rate -d 'Alerts per second in the federation phase' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l federation-kill -d 'Nodes killed (SIGKILL) a third of the way through the federation phase and restarted 2 s later (the variant: 3); the run must stay exact' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l federation-settle -d 'Seconds the federation phase waits, after the last publish, for every eligible node to show every alert before it counts the rest missing' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l federation-idle-seconds -d 'Seconds the federation phase measures the nodes\' CPU with no traffic (after the warm-up settled and every Watch stream is open, before the load): the fixed cost of timers, keepalives and idle tasks. 0 measures nothing' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l federation-hop-limit -d 'Hop limit the federation phase\'s nodes sign into their alerts (`limits.hop_limit`; the default is the node\'s, 8). A lower one stresses relays that get a message at the limit: a GREEN alert is then owed only to the nodes within that many links of its origin, an AMBER alert to its recipients among them' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l storage -d 'Where the nodes keep their stores in the ingest and relay phases' -r -f -a "sqlite\t''
postgres\t''"
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l pg-url -d 'With `--storage postgres`: a PostgreSQL server whose role may create databases (one fresh database per node, dropped afterwards). Without it, a throw-away local cluster is started (Debian\'s postgresql)' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l attachment-mib -d 'Size of the attachment in the attachment phase, in MiB' -r
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l json -d 'Print one JSON object instead of a table'
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l distinct-indicators -d 'Give each alert of the ingest phase indicators no other alert carries (an address and a SHA-256 of its own), as partners\' alerts do, instead of the two every alert shares: the store\'s correlation index then takes its inserts all over its key range, not at two places'
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l memory -d 'Run only the memory phase: queue alerts for a peer that stays down and sample the relaying node\'s resident memory (Linux, reads /proc)'
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l disk -d 'Run only the disk phase: bytes per stored message, then a retention purge and a refill that must reuse the freed space'
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l reconcile -d 'Run only the reconciliation phase: two linked nodes, one missing some of the other\'s messages; time to converge, traffic, peak RSS'
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l incident -d 'Run only the incident phase: correlation of an arrival on a common indicator, GetSituation and ListIncidents of a large incident'
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l federation-flood -d 'Federation phase with Plumtree off on every node (`gossip.plumtree = false`): every message floods over every link policy allows, as before issue 13\'s trees; to compare in one build'
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l federation-cold-trees -d 'Federation phase from a fresh start: the warm-up sends one broadcast from node 0 only, so the first message of each other origin pays its Plumtree tree\'s formation (a flood) inside the measurement. By default the warm-up sends one broadcast from every node, and the load meets the trees of a running federation (the steady state)'
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l federation-warm-trees -d 'The steady state (one warm-up broadcast from every node): the default, so this changes nothing; kept so that older command lines still run'
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l attachments -d 'Run only the attachment phase: one TLP:AMBER attachment from node-a to node-c through node-b (a process): throughput, node-b\'s peak RSS, and CRITICAL alert latency during the transfer'
complete -c certfed -n "__fish_certfed_using_subcommand bench" -l signatures -d 'Run only the signature phase: µs to seal one 1 KiB alert and to check one as admission does, in batches of 1, 16, 64 and 512, and the curve25519-dalek backend this processor runs'
complete -c certfed -n "__fish_certfed_using_subcommand bench" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand completions" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand man" -l out-dir -d 'Output folder' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand man" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand info" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand info" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand info" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand info" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand info" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand info" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and not __fish_seen_subcommand_from publish list get ack export import help" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and not __fish_seen_subcommand_from publish list get ack export import help" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and not __fish_seen_subcommand_from publish list get ack export import help" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and not __fish_seen_subcommand_from publish list get ack export import help" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and not __fish_seen_subcommand_from publish list get ack export import help" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and not __fish_seen_subcommand_from publish list get ack export import help" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and not __fish_seen_subcommand_from publish list get ack export import help" -f -a "publish" -d 'Sign and send an alert'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and not __fish_seen_subcommand_from publish list get ack export import help" -f -a "list" -d 'List alerts held by the node, newest first'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and not __fish_seen_subcommand_from publish list get ack export import help" -f -a "get" -d 'Show one message: origin, payload, path and chain of custody, and whether it was superseded or retracted'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and not __fish_seen_subcommand_from publish list get ack export import help" -f -a "ack" -d 'Record that you have seen a message (a receipt goes to its origin)'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and not __fish_seen_subcommand_from publish list get ack export import help" -f -a "export" -d 'Write alerts as a STIX 2.1 bundle or MISP events'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and not __fish_seen_subcommand_from publish list get ack export import help" -f -a "import" -d 'Publish the alerts of a STIX 2.1 bundle or MISP event file (all or nothing)'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and not __fish_seen_subcommand_from publish list get ack export import help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l title -d 'Title (one line)' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l description -d 'Description (free text)' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l tlp -d 'TLP marking' -r -f -a "clear\t'no limit on disclosure; may be broadcast'
green\t'the community; may be broadcast, not public'
amber\t'recipients\' organisations and clients; named recipients, encrypted'
amber+strict\t'recipients\' organisations only; named recipients, encrypted'
red\t'named recipients only, encrypted'"
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l severity -d 'Severity' -r -f -a "low\t''
medium\t''
high\t''
critical\t''"
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l rsit -d 'RSIT incident class' -r -f -a "abusive-content\t''
malicious-code\t''
information-gathering\t''
intrusion-attempts\t''
intrusions\t''
availability\t''
information-content-security\t''
fraud\t''
vulnerable\t''
other\t''
test\t''"
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l rsit-type -d 'RSIT incident type within the class (MISP rsit taxonomy, e.g. system-compromise)' -r -f -a "spam\t''
harmful-speech\t''
violence\t''
infected-system\t''
c2-server\t''
malware-distribution\t''
malware-configuration\t''
scanner\t''
sniffing\t''
social-engineering\t''
ids-alert\t''
brute-force\t''
exploit\t''
privileged-account-compromise\t''
unprivileged-account-compromise\t''
application-compromise\t''
system-compromise\t''
burglary\t''
dos\t''
ddos\t''
misconfiguration\t''
sabotage\t''
outage\t''
unauthorised-information-access\t''
unauthorised-information-modification\t''
data-loss\t''
data-leak\t''
unauthorised-use-of-resources\t''
copyright\t''
masquerade\t''
phishing\t''
weak-crypto\t''
ddos-amplifier\t''
potentially-unwanted-accessible\t''
information-disclosure\t''
vulnerable-system\t''
other\t''
undetermined\t''
test\t''"
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l sector -d 'NIS2 sector (repeatable)' -r -f -a "energy\t''
transport\t''
banking\t''
financial\t''
health\t''
drinking-water\t''
waste-water\t''
digital-infrastructure\t''
ict-services\t''
public-administration\t''
space\t''
courier\t''
waste-management\t''
chemical\t''
food\t''
manufacturing\t''
digital-providers\t''
research\t''"
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l subsector -d 'NIS2 subsector (repeatable; its sector must be given with --sector too)' -r -f -a "electricity\t''
district-heating-and-cooling\t''
oil\t''
gas\t''
hydrogen\t''
air\t''
rail\t''
water\t''
road\t''
banking-subsector\t''
financial-subsector\t''
health-subsector\t''
drinking-water-subsector\t''
waste-water-subsector\t''
digital-infrastructure-subsector\t''
ict-management-subsector\t''
public-administration-subsector\t''
space-subsector\t''
courier-subsector\t''
waste-management-subsector\t''
chemical-subsector\t''
food-subsector\t''
medical-devices-subsector\t''
electronic-optical-subsector\t''
electrical-equipment-subsector\t''
machine-tool-subsector\t''
vehicle-manufacturing-subsector\t''
other-transport-equipment-subsector\t''
digital-providers-subsector\t''
research-subsector\t''"
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l country -d 'Affected country, ISO 3166-1 alpha-2 (repeatable)' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l indicator -d 'Indicator TYPE:VALUE (repeatable); types: ip, cidr, domain, url, email, sha256, sha1, md5, cve, asn, text' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l reference -d 'Reference URL or document id (repeatable)' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l to -d 'Recipient node (repeatable). None: the whole federation (clear/green only)' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l expires-in-hours -d 'Expire the alert this many hours from now' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l supersedes -d 'Message id of an earlier alert of this node that this one updates' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l incident -d 'Contribute this alert to an incident (its TLP at least the incident\'s)' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l attach -d 'Attach an evidence file (repeatable); `FILE,malware` flags a malware sample. Encrypted end to end for TLP:AMBER and above; the alert is published only once every file has reached the node complete' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l retract -d 'With --supersedes: retract that alert instead of updating it'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l exercise -d 'Mark as exercise traffic'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l open-incident -d 'Open an incident with this alert (its message id becomes the incident id)'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from publish" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from list" -l min-severity -d 'Minimum severity' -r -f -a "low\t''
medium\t''
high\t''
critical\t''"
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from list" -l tlp -d 'Only this TLP (repeatable)' -r -f -a "clear\t'no limit on disclosure; may be broadcast'
green\t'the community; may be broadcast, not public'
amber\t'recipients\' organisations and clients; named recipients, encrypted'
amber+strict\t'recipients\' organisations only; named recipients, encrypted'
red\t'named recipients only, encrypted'"
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from list" -l sector -d 'Only this NIS2 sector (repeatable)' -r -f -a "energy\t''
transport\t''
banking\t''
financial\t''
health\t''
drinking-water\t''
waste-water\t''
digital-infrastructure\t''
ict-services\t''
public-administration\t''
space\t''
courier\t''
waste-management\t''
chemical\t''
food\t''
manufacturing\t''
digital-providers\t''
research\t''"
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from list" -l origin -d 'Only from this origin node (repeatable)' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from list" -l limit -d 'Page size' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from list" -l page-token -d 'Continue from a previous listing\'s next page token' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from list" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from list" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from list" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from list" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from list" -l exercise -d 'Include exercise traffic'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from list" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from get" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from get" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from get" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from get" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from get" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from get" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from ack" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from ack" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from ack" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from ack" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from ack" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from ack" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from export" -l format -d 'Output format' -r -f -a "stix21\t'A STIX 2.1 bundle (OASIS), TLP 2.0 markings'
misp\t'MISP event JSON (one event, or {"response": [...]} for several)'"
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from export" -l since -d 'Only alerts created at or after this time: RFC 3339 (2025-05-01T00:00:00Z) or an age (90m, 24h, 7d)' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from export" -l max-tlp -d 'Leave out alerts above this TLP' -r -f -a "clear\t'no limit on disclosure; may be broadcast'
green\t'the community; may be broadcast, not public'
amber\t'recipients\' organisations and clients; named recipients, encrypted'
amber+strict\t'recipients\' organisations only; named recipients, encrypted'
red\t'named recipients only, encrypted'"
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from export" -l out -d 'Write to this file instead of stdout' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from export" -l inline-max -d 'Include the content of attachments up to this many bytes each (MISP `data`, STIX `payload_bin`); larger ones, and ones not on the node, are described by name, size and SHA-256 only. 0: describe every attachment without its content' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from export" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from export" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from export" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from export" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from export" -l exercise -d 'Include exercise traffic'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from export" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from import" -l format -d 'Input format' -r -f -a "stix21\t'A STIX 2.1 bundle (OASIS), TLP 2.0 markings'
misp\t'MISP event JSON (one event, or {"response": [...]} for several)'"
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from import" -l tlp -d 'TLP of every imported alert (required; a file marked more restrictively is refused)' -r -f -a "clear\t'no limit on disclosure; may be broadcast'
green\t'the community; may be broadcast, not public'
amber\t'recipients\' organisations and clients; named recipients, encrypted'
amber+strict\t'recipients\' organisations only; named recipients, encrypted'
red\t'named recipients only, encrypted'"
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from import" -l to -d 'Recipient node (repeatable). None: the whole federation (clear/green only)' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from import" -l severity -d 'Severity of alerts the file gives none for' -r -f -a "low\t''
medium\t''
high\t''
critical\t''"
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from import" -l title -d 'Title of the one alert made of a STIX bundle without reports' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from import" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from import" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from import" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from import" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from import" -l exercise -d 'Mark the imported alerts as exercise traffic'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from import" -l dry-run -d 'Check everything (here and on the node) and show what would be published; publish nothing'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from import" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from help" -f -a "publish" -d 'Sign and send an alert'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from help" -f -a "list" -d 'List alerts held by the node, newest first'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from help" -f -a "get" -d 'Show one message: origin, payload, path and chain of custody, and whether it was superseded or retracted'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from help" -f -a "ack" -d 'Record that you have seen a message (a receipt goes to its origin)'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from help" -f -a "export" -d 'Write alerts as a STIX 2.1 bundle or MISP events'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from help" -f -a "import" -d 'Publish the alerts of a STIX 2.1 bundle or MISP event file (all or nothing)'
complete -c certfed -n "__fish_certfed_using_subcommand alert; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and not __fish_seen_subcommand_from list get help" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and not __fish_seen_subcommand_from list get help" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and not __fish_seen_subcommand_from list get help" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and not __fish_seen_subcommand_from list get help" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and not __fish_seen_subcommand_from list get help" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and not __fish_seen_subcommand_from list get help" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and not __fish_seen_subcommand_from list get help" -f -a "list" -d 'The attachments of a message and their state on the node (available, fetching n %, not yet fetched)'
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and not __fish_seen_subcommand_from list get help" -f -a "get" -d 'Download an attachment to a file (verified against its signed SHA-256)'
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and not __fish_seen_subcommand_from list get help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from list" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from list" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from list" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from list" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from list" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from get" -l out -d 'File to write (must not exist; written with mode 0600, never executable)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from get" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from get" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from get" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from get" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from get" -l i-know-it-is-malware -d 'Required to save an attachment flagged as a malware sample'
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from get" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from get" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from help" -f -a "list" -d 'The attachments of a message and their state on the node (available, fetching n %, not yet fetched)'
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from help" -f -a "get" -d 'Download an attachment to a file (verified against its signed SHA-256)'
complete -c certfed -n "__fish_certfed_using_subcommand attachment; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and not __fish_seen_subcommand_from request offer decide update list show help" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and not __fish_seen_subcommand_from request offer decide update list show help" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and not __fish_seen_subcommand_from request offer decide update list show help" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and not __fish_seen_subcommand_from request offer decide update list show help" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and not __fish_seen_subcommand_from request offer decide update list show help" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and not __fish_seen_subcommand_from request offer decide update list show help" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and not __fish_seen_subcommand_from request offer decide update list show help" -f -a "request" -d 'Ask partners for assistance (this node is the requester)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and not __fish_seen_subcommand_from request offer decide update list show help" -f -a "offer" -d 'Offer assistance on a request (this node is the donor)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and not __fish_seen_subcommand_from request offer decide update list show help" -f -a "decide" -d 'Accept or decline an offer (requester only)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and not __fish_seen_subcommand_from request offer decide update list show help" -f -a "update" -d 'Move a request (requester) or withdraw your own offer (donor)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and not __fish_seen_subcommand_from request offer decide update list show help" -f -a "list" -d 'List assistance requests known to the node'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and not __fish_seen_subcommand_from request offer decide update list show help" -f -a "show" -d 'One request with its offers and signed history'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and not __fish_seen_subcommand_from request offer decide update list show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l title -d 'Title (one line)' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l description -d 'What is needed and why' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l tlp -d 'TLP marking of the request and of every later step' -r -f -a "clear\t'no limit on disclosure; may be broadcast'
green\t'the community; may be broadcast, not public'
amber\t'recipients\' organisations and clients; named recipients, encrypted'
amber+strict\t'recipients\' organisations only; named recipients, encrypted'
red\t'named recipients only, encrypted'"
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l service -d 'Service requested (repeatable)' -r -f -a "incident-response\t''
forensics\t''
malware-analysis\t''
ddos-mitigation\t''
threat-hunting\t''
vulnerability-assessment\t''
recovery\t''
threat-intelligence\t''
equipment-licences\t''"
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l sector -d 'Affected NIS2 sector' -r -f -a "energy\t''
transport\t''
banking\t''
financial\t''
health\t''
drinking-water\t''
waste-water\t''
digital-infrastructure\t''
ict-services\t''
public-administration\t''
space\t''
courier\t''
waste-management\t''
chemical\t''
food\t''
manufacturing\t''
digital-providers\t''
research\t''"
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l rsit -d 'RSIT incident class' -r -f -a "abusive-content\t''
malicious-code\t''
information-gathering\t''
intrusion-attempts\t''
intrusions\t''
availability\t''
information-content-security\t''
fraud\t''
vulnerable\t''
other\t''
test\t''"
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l severity -d 'Severity' -r -f -a "low\t''
medium\t''
high\t''
critical\t''"
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l person-days -d 'Estimated person-days needed' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l mitigation -d 'Mitigation already done' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l deadline-hours -d 'Offers needed within this many hours' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l alert -d 'Linked alert message id (repeatable)' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l to -d 'Recipient node (repeatable). None: the whole federation (clear/green only)' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l attach -d 'Attach evidence (repeatable): a file, or FILE,malware for a malware sample' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l important -d 'The affected entity is important (default: essential)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l cross-border -d 'The incident spills over borders'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l on-site -d 'Help is needed on site (default: remote)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l exercise -d 'Exercise traffic (a scenario inject): every later step is exercise too'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from request" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from offer" -l summary -d 'What is offered (one line)' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from offer" -l capability -d 'Capability offered (repeatable)' -r -f -a "incident-response\t''
forensics\t''
malware-analysis\t''
ddos-mitigation\t''
threat-hunting\t''
vulnerability-assessment\t''
recovery\t''
threat-intelligence\t''
equipment-licences\t''"
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from offer" -l person-days -d 'Person-days offered' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from offer" -l conditions -d 'Conditions of the offer' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from offer" -l funding -d 'Funding channel' -r -f -a "bilateral\t''
reserve\t''
coalition\t''"
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from offer" -l attach -d 'Attach evidence (repeatable): a file, or FILE,malware for a malware sample' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from offer" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from offer" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from offer" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from offer" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from offer" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from offer" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from decide" -l note -d 'A note for the donor' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from decide" -l attach -d 'Attach evidence (repeatable): a file, or FILE,malware for a malware sample' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from decide" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from decide" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from decide" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from decide" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from decide" -l accept -d 'Accept the offer'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from decide" -l decline -d 'Decline the offer'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from decide" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from decide" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from update" -l state -d 'Target state of the request' -r -f -a "deployed\t''
completed\t''
closed\t''
withdrawn\t''"
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from update" -l withdraw-offer -d 'Withdraw this offer of yours instead' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from update" -l note -d 'A note recorded with the step' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from update" -l attach -d 'Attach evidence (repeatable): a file, or FILE,malware for a malware sample' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from update" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from update" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from update" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from update" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from update" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from list" -l state -d 'Only requests in this state (repeatable)' -r -f -a "requested\t''
offered\t''
accepted\t''
deployed\t''
completed\t''
closed\t''
withdrawn\t''"
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from list" -l limit -d 'Page size' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from list" -l page-token -d 'Continue from a previous listing\'s next page token' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from list" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from list" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from list" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from list" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from list" -l exercise -d 'Include exercise requests'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from list" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from show" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from show" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from show" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from show" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from show" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from help" -f -a "request" -d 'Ask partners for assistance (this node is the requester)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from help" -f -a "offer" -d 'Offer assistance on a request (this node is the donor)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from help" -f -a "decide" -d 'Accept or decline an offer (requester only)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from help" -f -a "update" -d 'Move a request (requester) or withdraw your own offer (donor)'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from help" -f -a "list" -d 'List assistance requests known to the node'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from help" -f -a "show" -d 'One request with its offers and signed history'
complete -c certfed -n "__fish_certfed_using_subcommand assist; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and not __fish_seen_subcommand_from list show link sight status merge report help" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and not __fish_seen_subcommand_from list show link sight status merge report help" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and not __fish_seen_subcommand_from list show link sight status merge report help" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and not __fish_seen_subcommand_from list show link sight status merge report help" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and not __fish_seen_subcommand_from list show link sight status merge report help" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and not __fish_seen_subcommand_from list show link sight status merge report help" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and not __fish_seen_subcommand_from list show link sight status merge report help" -f -a "list" -d 'Incidents this node holds, newest first'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and not __fish_seen_subcommand_from list show link sight status merge report help" -f -a "show" -d 'The shared picture of one incident as this node sees it'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and not __fish_seen_subcommand_from list show link sight status merge report help" -f -a "link" -d 'Declare a message (alert, sighting, assistance request, incident) part of an incident'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and not __fish_seen_subcommand_from list show link sight status merge report help" -f -a "sight" -d 'Report a sighting: "we observe this too" (of an incident, or of indicators alone)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and not __fish_seen_subcommand_from list show link sight status merge report help" -f -a "status" -d 'Change an incident\'s status (its opener only)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and not __fish_seen_subcommand_from list show link sight status merge report help" -f -a "merge" -d 'Say that an incident this node opened and another are one (takes effect once the other\'s opener says the same)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and not __fish_seen_subcommand_from list show link sight status merge report help" -f -a "report" -d 'Write the situation report: one self-contained HTML page with the escalation timeline, partners × sectors, indicators and assistance'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and not __fish_seen_subcommand_from list show link sight status merge report help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from list" -l limit -d 'Page size' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from list" -l page-token -d 'Continue from a previous listing\'s next page token' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from list" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from list" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from list" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from list" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from list" -l all -d 'Include resolved incidents'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from list" -l exercise -d 'Include exercise incidents'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from list" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from show" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from show" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from show" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from show" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from show" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from link" -l note -d 'Why' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from link" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from link" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from link" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from link" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from link" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from link" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l country -d 'Where it was observed: ISO 3166-1 alpha-2 country code' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l sector -d 'NIS2 sector hit' -r -f -a "energy\t''
transport\t''
banking\t''
financial\t''
health\t''
drinking-water\t''
waste-water\t''
digital-infrastructure\t''
ict-services\t''
public-administration\t''
space\t''
courier\t''
waste-management\t''
chemical\t''
food\t''
manufacturing\t''
digital-providers\t''
research\t''"
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l indicator -d 'Indicator TYPE:VALUE observed (repeatable); types: ip, cidr, domain, url, email, sha256, sha1, md5, cve, asn, text' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l count -d 'How many times (or entities)' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l severity -d 'How severe it is here' -r -f -a "low\t''
medium\t''
high\t''
critical\t''"
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l observed -d 'When it was observed (RFC 3339, e.g. 2025-03-01T10:00:00Z; default: now)' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l tlp -d 'TLP marking (default: the incident\'s)' -r -f -a "clear\t'no limit on disclosure; may be broadcast'
green\t'the community; may be broadcast, not public'
amber\t'recipients\' organisations and clients; named recipients, encrypted'
amber+strict\t'recipients\' organisations only; named recipients, encrypted'
red\t'named recipients only, encrypted'"
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l to -d 'Recipient node (repeatable). Default: the incident\'s audience' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l note -d 'Analyst note' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l attach -d 'Attach evidence (repeatable): a file, or FILE,malware for a malware sample. It rides on the sighting\'s TLP and audience (encrypted end to end for TLP:AMBER and above); the sighting is signed only once every file has reached the node complete' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l exercise -d 'Exercise traffic: a sighting of no incident is signed as exercise; on an incident, the incident must be an exercise one (refused on a real incident). Without it, a sighting takes its incident\'s flag'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from sight" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from status" -l note -d 'A note recorded with the change' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from status" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from status" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from status" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from status" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from status" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from merge" -l note -d 'Why' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from merge" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from merge" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from merge" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from merge" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from merge" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from merge" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from report" -l html -d 'Output file (written whole, then renamed into place)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from report" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from report" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from report" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from report" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from report" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from report" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from help" -f -a "list" -d 'Incidents this node holds, newest first'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from help" -f -a "show" -d 'The shared picture of one incident as this node sees it'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from help" -f -a "link" -d 'Declare a message (alert, sighting, assistance request, incident) part of an incident'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from help" -f -a "sight" -d 'Report a sighting: "we observe this too" (of an incident, or of indicators alone)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from help" -f -a "status" -d 'Change an incident\'s status (its opener only)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from help" -f -a "merge" -d 'Say that an incident this node opened and another are one (takes effect once the other\'s opener says the same)'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from help" -f -a "report" -d 'Write the situation report: one self-contained HTML page with the escalation timeline, partners × sectors, indicators and assistance'
complete -c certfed -n "__fish_certfed_using_subcommand incident; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand peers" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand peers" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand peers" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand peers" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand peers" -l reconcile -d 'Reconcile with this peer now (ReconcilePeer) and show the result: the difference found, messages queued each way, rounds, bytes' -r
complete -c certfed -n "__fish_certfed_using_subcommand peers" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand peers" -l retry-refused -d 'With --reconcile: offer again what the peer refused for good within the last 24 h (its cause fixed on the peer)'
complete -c certfed -n "__fish_certfed_using_subcommand peers" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand delivery" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand delivery" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand delivery" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand delivery" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand delivery" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand delivery" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand feed; and not __fish_seen_subcommand_from misp help" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand feed; and not __fish_seen_subcommand_from misp help" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand feed; and not __fish_seen_subcommand_from misp help" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand feed; and not __fish_seen_subcommand_from misp help" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand feed; and not __fish_seen_subcommand_from misp help" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand feed; and not __fish_seen_subcommand_from misp help" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand feed; and not __fish_seen_subcommand_from misp help" -f -a "misp" -d 'Write or update a MISP feed folder (manifest.json, one <uuid>.json per alert, hashes.csv)'
complete -c certfed -n "__fish_certfed_using_subcommand feed; and not __fish_seen_subcommand_from misp help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand feed; and __fish_seen_subcommand_from misp" -l out -d 'The feed folder (created if missing; later runs add what is new)' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand feed; and __fish_seen_subcommand_from misp" -l since -d 'Only alerts created at or after this time: RFC 3339 or an age (24h, 7d)' -r
complete -c certfed -n "__fish_certfed_using_subcommand feed; and __fish_seen_subcommand_from misp" -l max-tlp -d 'Highest TLP put in the feed (default green: a feed folder is often served over HTTP)' -r -f -a "clear\t'no limit on disclosure; may be broadcast'
green\t'the community; may be broadcast, not public'
amber\t'recipients\' organisations and clients; named recipients, encrypted'
amber+strict\t'recipients\' organisations only; named recipients, encrypted'
red\t'named recipients only, encrypted'"
complete -c certfed -n "__fish_certfed_using_subcommand feed; and __fish_seen_subcommand_from misp" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand feed; and __fish_seen_subcommand_from misp" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand feed; and __fish_seen_subcommand_from misp" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand feed; and __fish_seen_subcommand_from misp" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand feed; and __fish_seen_subcommand_from misp" -l exercise -d 'Include exercise traffic'
complete -c certfed -n "__fish_certfed_using_subcommand feed; and __fish_seen_subcommand_from misp" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand feed; and __fish_seen_subcommand_from misp" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c certfed -n "__fish_certfed_using_subcommand feed; and __fish_seen_subcommand_from help" -f -a "misp" -d 'Write or update a MISP feed folder (manifest.json, one <uuid>.json per alert, hashes.csv)'
complete -c certfed -n "__fish_certfed_using_subcommand feed; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand watch" -l node -d 'Node address, host:port (the packaged configuration listens on 7700). For an active/standby pair, both addresses separated by a comma (a:7700,b:7700): the one whose health says SERVING is used' -r
complete -c certfed -n "__fish_certfed_using_subcommand watch" -l ca -d 'Federation CA certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand watch" -l cert -d 'Operator certificate (PEM). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand watch" -l key -d 'Operator private key (PEM, mode 0600). Required' -r -F
complete -c certfed -n "__fish_certfed_using_subcommand watch" -l after -d 'Resume after this cursor' -r
complete -c certfed -n "__fish_certfed_using_subcommand watch" -l count -d 'Stop after this many events (0: run until interrupted)' -r
complete -c certfed -n "__fish_certfed_using_subcommand watch" -l json -d 'Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it)'
complete -c certfed -n "__fish_certfed_using_subcommand watch" -l from-start -d 'Start from the first stored message'
complete -c certfed -n "__fish_certfed_using_subcommand watch" -l exercise -d 'Show exercise traffic too, marked [EXERCISE] (default: real traffic only)'
complete -c certfed -n "__fish_certfed_using_subcommand watch" -s h -l help -d 'Print help'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "serve" -d 'Run a node in the foreground until SIGTERM/SIGINT (systemd Type=notify)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "check-config" -d 'Check a configuration file exactly as `serve` would (files, keys, permissions, identities, peers, members) without opening a port; exit 0 when `serve` would accept it, 1 naming the problem otherwise'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "pki" -d 'Create a federation CA, node and operator certificates, CRLs and signing keys'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "roster" -d 'The signed federation roster: draft, sign and verify offline; publish and show online'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "demo" -d 'Start a real local federation on loopback and play a short scenario, ending with the incident\'s HTML situation report'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "exercise" -d 'Exercises: play a scenario on a local federation and report who knew what when (deploy/exercises/*.toml)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "bench" -d 'Run the standard benchmark on loopback (starts its own nodes)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "completions" -d 'Print a shell completion script (bash: source it, or install it as /usr/share/bash-completion/completions/certfed)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "man" -d 'Write the man pages (certfed.1 and one per subcommand) to a folder'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "info" -d 'Node identity, version, peers and members'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "alert" -d 'Publish, list and inspect incident alerts'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "attachment" -d 'Evidence attached to messages: list them with their state, download one'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "assist" -d 'Request, offer, decide and follow assistance (Tallinn Mechanism style)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "incident" -d 'Incidents across partners: the shared picture, sightings, links, status, merges and the HTML situation report'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "peers" -d 'Direct peers and the state of each link (and the last reconciliation with each)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "delivery" -d 'Per-peer delivery state of a message'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "feed" -d 'Write a feed of the node\'s alerts that other tools fetch (MISP feed folder)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "watch" -d 'Stream messages as the node stores them (with --json: one JSON object per line)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and not __fish_seen_subcommand_from serve check-config pki roster demo exercise bench completions man info alert attachment assist incident peers delivery feed watch help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "ca" -d 'Create a new federation CA: DIR/ca.crt and DIR/ca.key (mode 0600)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "node" -d 'Issue a node TLS certificate (URI SAN urn:certfed:node:<ID>, serverAuth+clientAuth)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "operator" -d 'Issue an operator client certificate (URI SAN urn:certfed:operator:<NAME>, clientAuth)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "signing-key" -d 'Create an Ed25519 message-signing key pair: <ID>.sign.key (0600) and <ID>.sign.pub'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "revoke" -d 'Revoke certificates: add them to the CA\'s CRL (read if present) and re-sign it'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "crl" -d 'Write a fresh CRL (empty, or keeping the entries of the existing one)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from roster" -f -a "init" -d 'Start a draft: version 1 of a new federation, or (--from) the next version of the current roster'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from roster" -f -a "add-member" -d 'Add a member to a draft'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from roster" -f -a "remove-member" -d 'Remove a member from a draft (its messages will be refused, its links closed)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from roster" -f -a "rotate-key" -d 'Rotate a member\'s signing key in a draft: the old key stays valid for messages created up to --old-valid-hours from now, the new one is added'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from roster" -f -a "set-stewards" -d 'Replace the stewards and threshold of a draft (the old stewards\' quorum must still sign this version)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from roster" -f -a "sign" -d 'Add one steward\'s signature to a roster file (offline; the roster bytes are not changed)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from roster" -f -a "verify" -d 'Check a roster file (against the current one with --current) and print what changes'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from roster" -f -a "publish" -d 'Hand a signed roster to a node: it checks it, applies it and floods it to the federation'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from roster" -f -a "show" -d 'Show the roster a node holds: version, members, who signed it, what changed'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from exercise" -f -a "run" -d 'Play a scenario (deploy/exercises/*.toml) on a local federation it starts (one node per participant: real TLS and storage on loopback), record who knew what when from every node, and write the report'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from exercise" -f -a "report" -d 'Render the report of a run from its JSON record'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from alert" -f -a "publish" -d 'Sign and send an alert'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from alert" -f -a "list" -d 'List alerts held by the node, newest first'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from alert" -f -a "get" -d 'Show one message: origin, payload, path and chain of custody, and whether it was superseded or retracted'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from alert" -f -a "ack" -d 'Record that you have seen a message (a receipt goes to its origin)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from alert" -f -a "export" -d 'Write alerts as a STIX 2.1 bundle or MISP events'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from alert" -f -a "import" -d 'Publish the alerts of a STIX 2.1 bundle or MISP event file (all or nothing)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from attachment" -f -a "list" -d 'The attachments of a message and their state on the node (available, fetching n %, not yet fetched)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from attachment" -f -a "get" -d 'Download an attachment to a file (verified against its signed SHA-256)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from assist" -f -a "request" -d 'Ask partners for assistance (this node is the requester)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from assist" -f -a "offer" -d 'Offer assistance on a request (this node is the donor)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from assist" -f -a "decide" -d 'Accept or decline an offer (requester only)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from assist" -f -a "update" -d 'Move a request (requester) or withdraw your own offer (donor)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from assist" -f -a "list" -d 'List assistance requests known to the node'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from assist" -f -a "show" -d 'One request with its offers and signed history'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from incident" -f -a "list" -d 'Incidents this node holds, newest first'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from incident" -f -a "show" -d 'The shared picture of one incident as this node sees it'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from incident" -f -a "link" -d 'Declare a message (alert, sighting, assistance request, incident) part of an incident'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from incident" -f -a "sight" -d 'Report a sighting: "we observe this too" (of an incident, or of indicators alone)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from incident" -f -a "status" -d 'Change an incident\'s status (its opener only)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from incident" -f -a "merge" -d 'Say that an incident this node opened and another are one (takes effect once the other\'s opener says the same)'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from incident" -f -a "report" -d 'Write the situation report: one self-contained HTML page with the escalation timeline, partners × sectors, indicators and assistance'
complete -c certfed -n "__fish_certfed_using_subcommand help; and __fish_seen_subcommand_from feed" -f -a "misp" -d 'Write or update a MISP feed folder (manifest.json, one <uuid>.json per alert, hashes.csv)'
