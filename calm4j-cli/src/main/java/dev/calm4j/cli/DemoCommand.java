package dev.calm4j.cli;

import picocli.CommandLine.Command;

/** {@code calm demo}: the main job, the key-value arithmetic reproduction on its defaults. */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "The main job: the key-value arithmetic reproduction (same as 'calm experiment kv-arithmetic').",
        footer = {"", "Examples:",
                "  calm demo",
                "  calm demo --quick --out runs/kv-quick"})
final class DemoCommand extends KvArithmeticCommand {}
