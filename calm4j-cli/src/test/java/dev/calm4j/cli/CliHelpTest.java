package dev.calm4j.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.ParseResult;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static dev.calm4j.cli.CliTest.calm;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The help texts and the answers to a mistyped command line: help without libtorch, commands in groups, examples that
 * run from a clone, and two-line errors with a suggestion.
 */
class CliHelpTest {
    @TempDir
    Path tmp;

    static Path repo() {
        String r = System.getProperty("calm4j.repo");
        return (r != null ? Path.of(r) : Path.of("..")).toAbsolutePath().normalize();
    }

    /** Every command's path below {@code calm} ("compose", "experiment kv-arithmetic", ...), the help command aside. */
    static List<List<String>> commandPaths() {
        List<List<String>> paths = new ArrayList<>();
        paths.add(List.of());
        collect(new CommandLine(new Main()), new ArrayList<>(), paths);
        return paths;
    }

    private static void collect(CommandLine cl, List<String> prefix, List<List<String>> into) {
        cl.getSubcommands().forEach((name, sub) -> {
            if (sub.getCommandSpec().helpCommand()) {
                return;
            }
            List<String> p = new ArrayList<>(prefix);
            p.add(name);
            into.add(p);
            collect(sub, p, into);
        });
    }

    private static String help(List<String> path) {
        List<String> args = new ArrayList<>(path);
        args.add("--help");
        CliTest.Run r = calm(args.toArray(new String[0]));
        assertEquals(0, r.code(), path + ": " + r.err());
        assertEquals("", r.err(), path.toString());
        return r.out();
    }

    /** The help's example commands (lines starting with "calm "), continuation lines joined. */
    static List<String> examples(String help) {
        List<String> out = new ArrayList<>();
        StringBuilder cur = null;
        for (String line : help.lines().toList()) {
            String t = line.strip();
            if (cur != null) {
                cur.append(' ').append(t);
            } else if (t.startsWith("calm ")) {
                cur = new StringBuilder(t);
            }
            if (cur != null && !t.endsWith("\\")) {
                out.add(cur.toString());
                cur = null;
            } else if (cur != null) {
                cur.setLength(cur.length() - 1);
                cur = new StringBuilder(cur.toString().strip());
            }
        }
        return out;
    }

    private static String unquote(String w) {
        return w.length() >= 2 && (w.startsWith("'") && w.endsWith("'") || w.startsWith("\"") && w.endsWith("\""))
                ? w.substring(1, w.length() - 1) : w;
    }

    /** A JVM of its own (this one may have loaded libtorch already): calm's exit code and what it printed. */
    private CliTest.Run java(List<String> jvmArgs, String... args) throws Exception {
        Path classes = tmp.resolve("classes-" + System.nanoTime() + ".txt");
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Xlog:class+load=info:file=" + classes, "-cp", System.getProperty("java.class.path")));
        cmd.addAll(jvmArgs);
        cmd.add(Main.class.getName());
        cmd.addAll(List.of(args));
        Path out = tmp.resolve("out.txt");
        Path err = tmp.resolve("err.txt");
        Process p = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile()).start();
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "calm " + String.join(" ", args) + " did not end");
        return new CliTest.Run(p.exitValue(), Files.readString(out), Files.readString(err) + "\n--- classes loaded:\n"
                + Files.readString(classes));
    }

    @Test
    void helpAndVersionDoNotLoadLibtorch() throws Exception {
        String[][] asks = {{"--help"}, {"--version"}, {"compose", "--help"}, {"help", "compose"}, {"experiment"},
                {"experiment", "kv-arithmetic", "--help"}};
        for (String[] ask : asks) {
            CliTest.Run r = java(List.of(), ask);
            String what = "calm " + String.join(" ", ask);
            assertEquals(0, r.code(), what + ": " + r.err());
            assertFalse(r.out().isBlank(), what);
            String[] loaded = r.err().substring(r.err().indexOf("--- classes loaded:")).lines()
                    .map(l -> l.replaceFirst("^\\S+\\s+", "").split(" ")[0]).toArray(String[]::new);
            assertTrue(Arrays.asList(loaded).contains(Main.class.getName()), what + ": the class-load log is read");
            for (String c : loaded) {
                assertFalse(c.equals("org.bytedeco.pytorch.global.torch") || c.equals("dev.calm4j.Torch")
                        || c.startsWith("org.bytedeco.javacpp.Loader"), what + " loaded " + c);
            }
        }
        // Only a command that runs loads it, and a failure to is one line and exit code 2.
        CliTest.Run bad = java(List.of("-Dcalm4j.threads=many"), "inspect", "--model", repo().resolve(Examples.STORIES).toString());
        assertEquals(2, bad.code(), bad.err());
        String err = bad.err().substring(0, bad.err().indexOf("--- classes loaded:")).strip();
        assertEquals("calm: error: -Dcalm4j.threads: expected a positive integer, got 'many'", err);
        assertEquals(0, java(List.of("-Dcalm4j.threads=many"), "--help").code());
    }

    @Test
    void topLevelHelpListsTheCommandsInGroups() {
        String h = help(List.of());
        String[] headings = {"Models:", "Composition:", "Evaluation:", "Experiments:", "Tools:"};
        Map<String, List<String>> groups = new LinkedHashMap<>();
        String group = null;
        for (String line : h.substring(0, h.indexOf("Examples:")).lines().toList()) {
            if (Arrays.asList(headings).contains(line)) {
                group = line;
                groups.put(group, new ArrayList<>());
            } else if (group != null && line.matches("  \\S+ .*")) {
                groups.get(group).add(line.strip().split("\\s+")[0]);
            }
        }
        assertEquals(List.of(headings), new ArrayList<>(groups.keySet()), h);
        assertEquals(List.of("generate", "serve", "inspect", "init", "pretrain"), groups.get("Models:"));
        assertEquals(List.of("compose", "lora"), groups.get("Composition:"));
        assertEquals(List.of("eval"), groups.get("Evaluation:"));
        assertEquals(List.of("demo", "experiment"), groups.get("Experiments:"));
        assertEquals(List.of("bench", "help"), groups.get("Tools:"));
        assertFalse(h.contains("Other:") || h.contains("Commands:"), h);
        for (String line : h.substring(0, h.indexOf("Examples:")).lines().toList()) {
            assertTrue(line.length() <= 80, "wider than 80 columns: " + line);
        }
    }

    @Test
    void everyExampleParsesAndReadsOnlyPathsInTheRepositoryOrWrittenBefore() {
        Path repo = repo();
        assertTrue(Files.isDirectory(repo.resolve("calm4j-cli")), "calm4j.repo is the repository root: " + repo);
        int checked = 0;
        for (List<String> path : commandPaths()) {
            String h = help(path);
            assertFalse(h.contains("../") || h.contains("/shared/"), path + " help points outside the repository:\n" + h);
            if (path.size() <= 1) {
                assertEquals(h, calm(path.isEmpty() ? new String[] {"help"} : new String[] {"help", path.get(0)}).out(),
                        "calm help " + path + " prints what --help does");
            }
            List<String> created = new ArrayList<>();
            List<String> examples = examples(h);
            assertFalse(examples.isEmpty(), path + " help has examples");
            for (String ex : examples) {
                List<String> words = HelpLayout.words(ex).stream().skip(1).map(CliHelpTest::unquote).toList();
                ParseResult pr;
                try {
                    pr = new CommandLine(new Main()).parseArgs(words.toArray(new String[0]));
                } catch (CommandLine.ParameterException e) {
                    fail(path + " help, example '" + ex + "': " + e.getMessage());
                    return;
                }
                while (pr.hasSubcommand()) {
                    pr = pr.subcommand();
                }
                for (OptionSpec o : pr.matchedOptions()) {
                    boolean isPath = Path.class.isAssignableFrom(o.type()) || Arrays.asList(o.auxiliaryTypes()).contains(Path.class);
                    if (!isPath) {
                        continue;
                    }
                    for (String v : o.originalStringValues()) {
                        String p = Path.of(v).normalize().toString();
                        assertFalse(Path.of(v).isAbsolute(), ex + ": " + v + " is not relative to the repository");
                        if (o.longestName().equals("--out")) {
                            created.add(p);
                            continue;
                        }
                        boolean written = created.stream().anyMatch(c -> p.equals(c) || p.startsWith(c + "/"));
                        assertTrue(written || Files.exists(repo.resolve(p)), path + " help, example '" + ex + "': " + v
                                + " neither is in the repository nor is written by an earlier example");
                        checked++;
                    }
                }
            }
        }
        assertTrue(checked > 40, "paths checked: " + checked);
    }

    @Test
    void onATerminalLongExamplesBreakBeforeOptionsAndStillPaste() {
        String before = System.getProperty("picocli.usage.width");
        System.setProperty("picocli.usage.width", "80");
        try {
            for (List<String> path : commandPaths()) {
                String narrow = help(path);
                for (String line : narrow.lines().toList()) {
                    assertTrue(line.length() <= 80, path + ": wider than 80 columns: " + line);
                    if (line.endsWith(" \\")) {
                        assertTrue(line.startsWith("  calm ") || line.startsWith(HelpLayout.CONTINUATION_INDENT + "--"), line);
                    }
                }
                System.clearProperty("picocli.usage.width");
                String whole = help(path);
                System.setProperty("picocli.usage.width", "80");
                assertEquals(examples(whole), examples(narrow), path + ": the same commands, whole or broken");
            }
        } finally {
            if (before == null) {
                System.clearProperty("picocli.usage.width");
            } else {
                System.setProperty("picocli.usage.width", before);
            }
        }
        assertEquals(List.of("  calm x --a 1 \\", "      --bb 'two words' \\", "      --c"),
                HelpLayout.wrapExample("  calm x --a 1 --bb 'two words' --c", 24));
    }

    private static void mistake(String first, String second, String... args) {
        CliTest.Run r = calm(args);
        String what = "calm " + String.join(" ", args);
        assertEquals(2, r.code(), what);
        assertEquals("", r.out(), what + ": no usage dump");
        List<String> lines = r.err().strip().lines().toList();
        assertTrue(lines.size() <= 3, what + ":\n" + r.err());
        assertEquals(first, lines.get(0), what);
        assertEquals(second, lines.get(1), what);
    }

    @Test
    void mistakesAnswerInTwoLinesWithTheClosestName() {
        mistake("calm: error: unknown option '--stpes' for 'calm compose'; did you mean '--steps'?",
                "Run 'calm compose --help' for usage.", "compose", "--stpes", "3");
        mistake("calm: error: unknown option '--stpes' for 'calm compose'; did you mean '--steps'?",
                "Run 'calm compose --help' for usage.", "compose", "--anchor", "a", "--augment", "b", "--data", "d",
                "--out", "o", "--stpes=3");
        mistake("calm: error: unknown command 'generat' for 'calm'; did you mean 'generate'?",
                "Run 'calm --help' for usage.", "generat", "--model", "x");
        mistake("calm: error: unknown command 'evaluate' for 'calm'; did you mean 'eval'?",
                "Run 'calm --help' for usage.", "evaluate");
        mistake("calm: error: unknown command 'kv-arith' for 'calm experiment'; did you mean 'kv-arithmetic'?",
                "Run 'calm experiment --help' for usage.", "experiment", "kv-arith");
        mistake("calm: error: unknown option '--hlep' for 'calm'; did you mean '--help'?",
                "Run 'calm --help' for usage.", "--hlep");
        mistake("calm: error: unknown option '--max-new' for 'calm generate'; did you mean '--max-new-tokens'?",
                "Run 'calm generate --help' for usage.", "generate", "--model", "x", "--prompt", "a", "--max-new", "3");
        mistake("calm: error: unknown option '--zzz' for 'calm eval'",
                "Run 'calm eval --help' for usage.", "eval", "--zzz");
        mistake("calm: error: missing required options: '--anchor=DIR', '--augment=DIR', '--data=FILE', '--out=DIR', '--steps=N'",
                "Run 'calm compose --help' for usage.", "compose");
        mistake("calm: error: invalid value for option '--steps': 'x' is not an int",
                "Run 'calm compose --help' for usage.", "compose", "--anchor", "a", "--augment", "b", "--data", "d",
                "--out", "o", "--steps", "x");
        mistake("calm: error: unexpected argument 'extra' for 'calm init'",
                "Run 'calm init --help' for usage.", "init", "--config", "c", "--out", "o", "extra");
        mistake("calm: error: --prompt=TEXT, --prompt-ids=IDS are mutually exclusive (specify only one)",
                "Run 'calm generate --help' for usage.", "generate", "--model", "x", "--prompt", "a", "--prompt-ids", "1");
    }
}
