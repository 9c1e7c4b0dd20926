/**
 * The library's entry point: load models, compose them, train the bridges, generate, evaluate, save and load, with
 * strings, paths and plain Java arrays (no tensors).
 *
 * <ul>
 *   <li>{@link dev.calm4j.api.LanguageModel}: a frozen Hugging Face model folder and its tokenizer.</li>
 *   <li>{@link dev.calm4j.api.Composition}: an anchor composed with augmenting models through trainable bridges
 *       (CALM); train, generate, evaluate, {@code save} as a bridge checkpoint, {@code load} it back.</li>
 *   <li>{@link dev.calm4j.api.GenerateOptions}, {@link dev.calm4j.api.Evaluation},
 *       {@link dev.calm4j.api.TrainSummary}, {@link dev.calm4j.api.ModelInfo}: what goes in and comes out.</li>
 * </ul>
 *
 * Training takes a {@link dev.calm4j.train.TrainConfig} ({@code TrainConfig.defaults(steps, batch, lr, seed)}) and
 * reports through a {@link dev.calm4j.train.TrainListener}; data is read into a {@link dev.calm4j.data.Dataset} with
 * the (anchor) model's rules by {@code readData}. Errors a caller can cause are {@link dev.calm4j.Calm4jException}s
 * whose message names the file, the field and what was expected.
 *
 * <p>libtorch is loaded and its threads set ({@link dev.calm4j.Torch#init()}) by the first
 * {@code LanguageModel.load} or {@code Composition.load}.
 */
package dev.calm4j.api;
