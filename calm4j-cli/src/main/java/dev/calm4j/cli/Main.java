package dev.calm4j.cli;

import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.PrintWriter;

/** {@code calm}: the command-line front of calm4j. */
@Command(name = "calm", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = "CALM (Composition to Augment Language Models) on the JVM: load Hugging Face checkpoints, "
                + "generate, inspect; pretrain small models, compose models through trained bridges, train the LoRA "
                + "baseline, evaluate.",
        subcommands = {DemoCommand.class, ExperimentCommand.class, GenerateCommand.class, InspectCommand.class, InitCommand.class, PretrainCommand.class,
                ComposeCommand.class, LoraCommand.class, EvalCommand.class, BenchCommand.class, CommandLine.HelpCommand.class},
        footer = {"", "Examples:",
                "  calm inspect --model ../shared/models/stories260K",
                "  calm generate --model ../shared/models/stories260K --prompt-ids 1 --max-new-tokens 32 --greedy",
                "  calm compose --anchor ./anchor --augment ./kv-model --data train.jsonl --eval eval.jsonl --out ./bridges --steps 1000",
                "  calm eval --bridges ./bridges --data eval.jsonl --metric exact"})
public final class Main implements Runnable {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    public static void main(String[] args) {
        System.exit(run(args, new PrintWriter(System.out, true), new PrintWriter(System.err, true)));
    }

    /** Runs the CLI and returns its exit code (tests call this in-process). */
    public static int run(String[] args, PrintWriter out, PrintWriter err) {
        CommandLine cl = new CommandLine(new Main());
        cl.setUsageHelpWidth(160);   // example lines stay whole
        cl.setOut(out);
        cl.setErr(err);
        cl.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            Throwable t = ex;
            while (t != null && !(t instanceof Calm4jException)) {
                t = t.getCause();
            }
            if (t != null) {
                // A user mistake: one line, no stack trace.
                commandLine.getErr().println("calm: error: " + t.getMessage());
                commandLine.getErr().flush();
                return 2;
            }
            throw ex;
        });
        try {
            Torch.init();
        } catch (Calm4jException e) {
            err.println("calm: error: " + e.getMessage());
            err.flush();
            return 2;
        }
        return cl.execute(args);
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = Main.class.getPackage().getImplementationVersion();
            return new String[] {"calm4j " + (v == null ? "dev" : v) + " (libtorch 2.10.0 via org.bytedeco:pytorch)"};
        }
    }
}
