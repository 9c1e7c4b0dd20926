package dev.calm4j.cli;

import picocli.CommandLine;
import picocli.CommandLine.Help;
import picocli.CommandLine.Model.UsageMessageSpec;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The help texts' layout: the top-level command list in groups, and examples that stay whole shell commands.
 *
 * <p>Examples are the footer's lines indented by two spaces. On a terminal (or with {@code -Dpicocli.usage.width=N})
 * a command longer than the width is broken before an option, with a {@code \} at the end of each line so that it
 * still pastes into a shell as one command; elsewhere (a pipe, a file) it stays one line, whole for grep and copy.
 * picocli itself would break it at any space or dot.
 */
final class HelpLayout {
    private HelpLayout() {}

    /** Continuation lines of a broken example start this far in. */
    static final String CONTINUATION_INDENT = "      ";

    /**
     * The top-level commands by group: each command's name and one-line summary. A command missing here is still
     * listed, under "Other".
     */
    static final Map<String, String[][]> GROUPS = new LinkedHashMap<>();

    static {
        GROUPS.put("Models", new String[][] {
                {"generate", "Generate text or token ids from a model, a LoRA or a composition"},
                {"serve", "Serve a model, a LoRA or a composition over HTTP (OpenAI API)"},
                {"inspect", "Show a model's config and size, or a composition's plan"},
                {"init", "Create a model folder with random weights from a config.json"},
                {"pretrain", "Train a small causal LM from scratch"}});
        GROUPS.put("Composition", new String[][] {
                {"compose", "Train CALM bridges from frozen augmenting models into an anchor"},
                {"lora", "Fine-tune LoRA adapters: the parameter-matched baseline"}});
        GROUPS.put("Evaluation", new String[][] {
                {"eval", "Score a model, a LoRA or a composition: exact match or perplexity"}});
        GROUPS.put("Experiments", new String[][] {
                {"demo", "The key-value arithmetic reproduction (the main job)"},
                {"experiment", "Run one of the paper's experiments"}});
        GROUPS.put("Tools", new String[][] {
                {"bench", "Time a composition on random weights from two config.json files"},
                {"help", "Show a command's help"}});
    }

    /** Installs the grouped command list on {@code root} and the example layout on it and every subcommand. */
    static void install(CommandLine root) {
        root.getHelpSectionMap().put(UsageMessageSpec.SECTION_KEY_COMMAND_LIST_HEADING, help -> "");
        root.getHelpSectionMap().put(UsageMessageSpec.SECTION_KEY_COMMAND_LIST, HelpLayout::commandGroups);
        installFooter(root);
    }

    private static void installFooter(CommandLine cl) {
        cl.getHelpSectionMap().put(UsageMessageSpec.SECTION_KEY_FOOTER, HelpLayout::footer);
        for (CommandLine sub : new LinkedHashSet<>(cl.getSubcommands().values())) {
            installFooter(sub);
        }
    }

    static String commandGroups(Help help) {
        Map<String, Help> subs = help.subcommands();
        if (subs.isEmpty()) {
            return "";
        }
        Map<String, List<String[]>> groups = new LinkedHashMap<>();
        Set<String> listed = new LinkedHashSet<>();
        GROUPS.forEach((group, rows) -> {
            for (String[] row : rows) {
                if (subs.containsKey(row[0])) {
                    groups.computeIfAbsent(group, g -> new ArrayList<>()).add(row);
                    listed.add(row[0]);
                }
            }
        });
        subs.forEach((name, sub) -> {
            if (!listed.contains(name) && !sub.commandSpec().usageMessage().hidden()) {
                String[] d = sub.commandSpec().usageMessage().description();
                groups.computeIfAbsent("Other", g -> new ArrayList<>()).add(new String[] {name, d.length > 0 ? d[0] : ""});
            }
        });
        int nameWidth = subs.keySet().stream().mapToInt(String::length).max().orElse(0) + 2;
        StringBuilder sb = new StringBuilder();
        groups.forEach((group, rows) -> {
            Help.TextTable table = Help.TextTable.forColumns(help.colorScheme(),
                    new Help.Column(nameWidth + 2, 2, Help.Column.Overflow.SPAN),
                    new Help.Column(help.commandSpec().usageMessage().width() - nameWidth - 2, 0, Help.Column.Overflow.WRAP));
            for (String[] row : rows) {
                table.addRowValues(help.colorScheme().commandText(row[0]), help.colorScheme().text(row[1]));
            }
            sb.append(String.format("%n%s:%n", group)).append(table);
        });
        return sb.toString();
    }

    static String footer(Help help) {
        UsageMessageSpec usage = help.commandSpec().usageMessage();
        int width = help.commandSpec().usageMessage().width();
        boolean wrap = widthKnown();
        StringBuilder sb = new StringBuilder();
        for (String line : usage.footer()) {
            if (line.startsWith("  ") && !line.isBlank()) {
                for (String l : wrap ? wrapExample(line, width) : List.of(line)) {
                    sb.append(l).append(System.lineSeparator());
                }
            } else {
                Help.join(help.ansi(), width, usage.adjustLineBreaksForWideCJKCharacters(), new String[] {line}, sb);
            }
        }
        return sb.toString();
    }

    /**
     * Whether the help is laid out for a known width: a terminal's (picocli asks it when auto width is on) or one
     * set with {@code -Dpicocli.usage.width=N}.
     */
    static boolean widthKnown() {
        String w = System.getProperty("picocli.usage.width");
        if (w != null && w.trim().matches("\\d+")) {
            return true;
        }
        java.io.Console c = System.console();
        if (c == null) {
            return false;
        }
        try {   // Java 22+: a Console also exists when the streams are redirected
            return (Boolean) java.io.Console.class.getMethod("isTerminal").invoke(c);
        } catch (ReflectiveOperationException e) {
            return true;
        }
    }

    /**
     * One example, broken into lines of at most {@code width} characters where it can be: before an option (an option
     * and its values stay together), each line but the last ending in {@code \}. A comment ({@code # ...}) is broken
     * between words, each line a comment.
     */
    static List<String> wrapExample(String line, int width) {
        if (line.length() <= width) {
            return List.of(line);
        }
        String indent = line.substring(0, line.length() - line.stripLeading().length());
        String body = line.strip();
        List<String> out = new ArrayList<>();
        if (body.startsWith("#")) {
            StringBuilder cur = new StringBuilder(indent).append('#');
            for (String word : body.substring(1).trim().split(" +")) {
                if (cur.length() + 1 + word.length() > width && cur.length() > indent.length() + 1) {
                    out.add(cur.toString());
                    cur = new StringBuilder(indent).append('#');
                }
                cur.append(' ').append(word);
            }
            out.add(cur.toString());
            return out;
        }
        List<String> chunks = chunks(body);
        StringBuilder cur = new StringBuilder(indent).append(chunks.get(0));
        for (int i = 1; i < chunks.size(); i++) {
            String c = chunks.get(i);
            int room = width - (i == chunks.size() - 1 ? 0 : 2);     // room for the " \" that ends every line but the last
            if (cur.length() + 1 + c.length() > room) {
                out.add(cur + " \\");
                cur = new StringBuilder(CONTINUATION_INDENT).append(c);
            } else {
                cur.append(' ').append(c);
            }
        }
        out.add(cur.toString());
        return out;
    }

    /**
     * The example's words grouped into what must stay on one line: the command (up to the first option), then each
     * option with its values. Quoted words ({@code 'Once upon a time'}) are one word.
     */
    static List<String> chunks(String command) {
        List<String> words = words(command);
        List<String> chunks = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        for (String w : words) {
            if (w.startsWith("-") && cur.length() > 0) {
                chunks.add(cur.toString());
                cur.setLength(0);
            }
            if (cur.length() > 0) {
                cur.append(' ');
            }
            cur.append(w);
        }
        if (cur.length() > 0) {
            chunks.add(cur.toString());
        }
        return chunks;
    }

    /** The words of a shell command line: split at spaces outside quotes, quotes kept. */
    static List<String> words(String command) {
        List<String> words = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        char quote = 0;
        for (char ch : command.toCharArray()) {
            if (quote != 0) {
                cur.append(ch);
                if (ch == quote) {
                    quote = 0;
                }
            } else if (ch == '\'' || ch == '"') {
                quote = ch;
                cur.append(ch);
            } else if (ch == ' ') {
                if (cur.length() > 0) {
                    words.add(cur.toString());
                    cur.setLength(0);
                }
            } else {
                cur.append(ch);
            }
        }
        if (cur.length() > 0) {
            words.add(cur.toString());
        }
        return words;
    }
}
