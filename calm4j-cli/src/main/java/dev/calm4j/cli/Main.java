package dev.calm4j.cli;

import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.io.RunLock;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.PrintWriter;

/** {@code calm}: the command-line front of calm4j. */
@Command(name = "calm", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = "CALM (Composition to Augment Language Models) on the JVM: load Hugging Face checkpoints, "
                + "generate, inspect; pretrain small models, compose models through trained bridges, train the LoRA "
                + "baseline, evaluate.",
        subcommands = {DemoCommand.class, ExperimentCommand.class, GenerateCommand.class, ServeCommand.class, InspectCommand.class, InitCommand.class, PretrainCommand.class,
                ComposeCommand.class, LoraCommand.class, EvalCommand.class, BenchCommand.class, CommandLine.HelpCommand.class},
        footer = {"", "Examples:",
                "  # from the repository root; each command's --help has more",
                "  calm inspect --model " + Examples.STORIES,
                "  calm generate --model " + Examples.STORIES + " --prompt-ids 1 --max-new-tokens 32 --greedy",
                "  # m_A knows the keys' values, m_B does sums: CALM composes them",
                "  calm generate --model " + Examples.M_A + " --prompt 'xtyqh=' --add-bos --max-new-tokens 4",
                "  calm inspect --anchor " + Examples.M_B + " --augment " + Examples.M_A,
                Examples.DEMO_NOTE,
                Examples.DEMO,
                "  calm compose --anchor " + Examples.M_B + " --augment " + Examples.M_A + " --connections '3->1' --heads 8"
                        + " --data " + Examples.TRAIN + " --eval " + Examples.HELD_OUT + " --out runs/calm --steps 800",
                "  calm eval --bridges runs/calm --data " + Examples.HELD_OUT + " --metric exact --show 3",
                "  calm generate --bridges " + Examples.BRIDGES + " --prompt " + Examples.HELD_OUT_PROMPT + " --add-bos --max-new-tokens 4"})
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
        cl.setUsageHelpAutoWidth(true);   // the terminal's width, else 80
        cl.setOut(out);
        cl.setErr(err);
        HelpLayout.install(cl);
        cl.setParameterExceptionHandler(new ParseErrors());
        cl.setExecutionExceptionHandler((ex, commandLine, parseResult) -> {
            Throwable t = ex;
            while (t != null && !(t instanceof Calm4jException)) {
                t = t.getCause();
            }
            if (t instanceof Training.Interrupted i) {
                commandLine.getErr().println("calm: " + i.getMessage());
                commandLine.getErr().flush();
                return i.exitCode();
            }
            if (t != null) {
                // A user mistake: one line, no stack trace.
                commandLine.getErr().println("calm: error: " + t.getMessage());
                commandLine.getErr().flush();
                return 2;
            }
            throw ex;
        });
        cl.setExecutionStrategy(Main::execute);
        return cl.execute(args);
    }

    /**
     * Runs the command parsed, loading libtorch first only when it needs it (seconds): help, the version and the
     * command lists answer without.
     */
    private static int execute(CommandLine.ParseResult parsed) {
        Integer help = CommandLine.executeHelpRequest(parsed);
        if (help != null) {
            return help;
        }
        Object command = parsed.asCommandLineList().get(parsed.asCommandLineList().size() - 1).getCommand();
        TrainOptions train = command instanceof ComposeCommand c ? c.train : command instanceof LoraCommand l ? l.train
                : command instanceof PretrainCommand p ? p.train : null;
        if (train != null && train.nproc != 1) {
            CommandLine cl = parsed.commandSpec().commandLine();
            try {
                return Launcher.run(parsed.originalArgs(), train.nproc, cl.getOut(), cl.getErr());
            } catch (Calm4jException e) {
                cl.getErr().println("calm: error: " + e.getMessage());
                cl.getErr().flush();
                return 2;
            }
        }
        if (!(command instanceof Main || command instanceof ExperimentCommand)) {
            try {
                Torch.init();
            } catch (Calm4jException e) {
                CommandLine cl = parsed.commandSpec().commandLine();
                cl.getErr().println("calm: error: " + e.getMessage());
                cl.getErr().flush();
                return 2;
            }
        }
        try {
            return new CommandLine.RunLast().execute(parsed);
        } finally {
            RunLock.releaseAllOfThisThread();     // a command's folder locks last as long as the command
        }
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = Main.class.getPackage().getImplementationVersion();
            return new String[] {"calm4j " + (v == null ? "dev" : v) + " (libtorch 2.10.0 via org.bytedeco:pytorch)"};
        }
    }
}
