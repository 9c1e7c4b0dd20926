package dev.calm4j.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code calm experiment <name>}: the paper's experiments. */
@Command(name = "experiment", mixinStandardHelpOptions = true,
        description = "Run one of the paper's experiments.",
        subcommands = {KvArithmeticCommand.class, LanguageCommand.class, CodeCommand.class},
        footer = {"", "Examples:",
                "  calm experiment kv-arithmetic --quick",
                "  calm experiment language --quick"})
final class ExperimentCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }
}
