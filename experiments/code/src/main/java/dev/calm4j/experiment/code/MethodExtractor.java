package dev.calm4j.experiment.code;

import com.github.javaparser.JavaParser;
import com.github.javaparser.ParseResult;
import com.github.javaparser.ParserConfiguration;
import com.github.javaparser.Position;
import com.github.javaparser.TokenRange;
import com.github.javaparser.ast.CompilationUnit;
import com.github.javaparser.ast.body.MethodDeclaration;
import com.github.javaparser.ast.comments.JavadocComment;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * Finds the methods of a Java source file with JavaParser: every method declaration that has a body (abstract and
 * interface methods without one have no code to read), in nested, local and anonymous classes too, each with its
 * source text and, if it has one, its Javadoc comment.
 *
 * <p>A method's code is its exact source from its first annotation or modifier to its closing brace (JavaParser's
 * token range: comments and blank lines inside the body kept; the Javadoc before it not included), line ends written
 * {@code \n}, trailing whitespace of each line removed, and every line after the first shifted left by the
 * indentation of the first one (as far as it has leading whitespace), so a member method starts at column 0.
 */
public final class MethodExtractor {
    private final JavaParser parser;

    /** One method. {@code line} is its first line in the file (1-based); {@code javadoc} the comment's content or null. */
    public record Method(String project, String path, int line, String name, String code, String javadoc) {
        public int lines() {
            return (int) code.chars().filter(c -> c == '\n').count() + 1;
        }
    }

    /** The methods of one file, or, when JavaParser could not parse it, why ({@code problem} non-null). */
    public record FileMethods(List<Method> methods, String problem) {}

    public MethodExtractor() {
        // The newest level the parser knows: the sources are Java 8 to 17, and a newer level still reads them.
        this.parser = new JavaParser(new ParserConfiguration()
                .setLanguageLevel(ParserConfiguration.LanguageLevel.JAVA_21)
                .setAttributeComments(true));
    }

    public FileMethods methods(SourceJar.SourceFile file) {
        ParseResult<CompilationUnit> result = parser.parse(file.text());
        if (!result.isSuccessful() || result.getResult().isEmpty()) {
            String problem = result.getProblems().isEmpty() ? "unparsable" : result.getProblems().get(0).getVerboseMessage();
            return new FileMethods(List.of(), file.path() + ": " + firstLine(problem));
        }
        List<Method> out = new ArrayList<>();
        for (MethodDeclaration m : result.getResult().get().findAll(MethodDeclaration.class)) {
            if (m.getBody().isEmpty()) {
                continue;
            }
            Optional<TokenRange> tokens = m.getTokenRange();
            Optional<Position> begin = m.getBegin();
            if (tokens.isEmpty() || begin.isEmpty()) {
                continue;
            }
            String code = tidy(tokens.get().toString(), begin.get().column - 1);
            String javadoc = m.getJavadocComment().map(JavadocComment::getContent).orElse(null);
            out.add(new Method(file.project(), file.path(), begin.get().line, m.getNameAsString(), code, javadoc));
        }
        return new FileMethods(out, null);
    }

    /** Line ends to {@code \n}, trailing whitespace removed, lines after the first shifted left by {@code indent}. */
    static String tidy(String source, int indent) {
        String[] lines = source.split("\r\n|\r|\n", -1);
        StringBuilder out = new StringBuilder(source.length());
        for (int i = 0; i < lines.length; i++) {
            String line = lines[i].stripTrailing();
            if (i > 0) {
                int k = 0;
                while (k < indent && k < line.length() && (line.charAt(k) == ' ' || line.charAt(k) == '\t')) {
                    k++;
                }
                line = line.substring(k);
                out.append('\n');
            }
            out.append(line);
        }
        return out.toString();
    }

    private static String firstLine(String s) {
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }
}
